"""Reparameterizable distributions that distrax lacks, with the distrax interface.

Both are ``distrax.Distribution`` subclasses (``sample(seed=..., sample_shape=...)``,
``log_prob``, ``sample_and_log_prob``), pure JAX, and jit/vmap/grad compatible:

* ``StudentT(df, loc, scale)``: elementwise Student-t, reparameterized in loc, scale *and* df
  through JAX's implicitly differentiated Gamma sampler.
* ``TanhNormal(loc, scale)``: a = tanh(u), u ~ N(loc, diag scale²), one event over the last axis
  (the SAC actor of seeds 000 and 002), with the log-det correction computed stably.

Parameters are checked at construction when they are concrete; traced values (inside ``jit`` or
``grad``) cannot be inspected and are trusted.
"""

from __future__ import annotations

import math

import distrax
import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from gradest._core import Array, EstimatorError, PRNGKey, check_values

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def _as_float_arrays(*values: Array) -> list[Array]:
    """Broadcasts ``values`` to one shape and one floating dtype (at least float32)."""
    dtype = jnp.result_type(*values, jnp.float32)
    return jnp.broadcast_arrays(*(jnp.asarray(v, dtype) for v in values))


class StudentT(distrax.Distribution):
    """Student's t with ``df`` degrees of freedom, location ``loc`` and scale ``scale``.

    Elementwise: batch shape is the broadcast shape of the parameters, event shape is (). With
    ν = df, μ = loc, σ = scale and z = (x − μ)/σ,

        log p(x) = log Γ((ν+1)/2) − log Γ(ν/2) − ½ log(νπ) − log σ − (ν+1)/2 · log(1 + z²/ν).

    Sampling: t = N / sqrt(G/(ν/2)) with N ~ N(0, 1), G ~ Gamma(ν/2, 1), and x = μ + σ t. The path
    is differentiable in μ and σ directly and in ν through G, whose gradient w.r.t. its shape
    JAX computes by implicit reparameterization, ∂G/∂ν = −(∂F/∂ν)/(∂F/∂G) with F the Gamma CDF.
    """

    def __init__(self, df: Array, loc: Array, scale: Array):
        check_values("StudentT df", df, positive=True)
        check_values("StudentT loc", loc, positive=False)
        check_values("StudentT scale", scale, positive=True)
        self._df, self._loc, self._scale = _as_float_arrays(df, loc, scale)

    @property
    def df(self) -> Array:
        return self._df

    @property
    def loc(self) -> Array:
        return self._loc

    @property
    def scale(self) -> Array:
        return self._scale

    @property
    def event_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self._loc.shape

    def _sample_n(self, key: PRNGKey, n: int) -> Array:
        shape = (n,) + self.batch_shape
        dtype = self._loc.dtype
        df, loc, scale = (jnp.broadcast_to(p, shape) for p in (self._df, self._loc, self._scale))
        key_normal, key_gamma = jax.random.split(key)
        normal = jax.random.normal(key_normal, shape, dtype)
        # log G rather than G: G underflows to 0 for small ν (t would be ±inf), log G does not;
        # loggamma is implicitly differentiated w.r.t. its shape like gamma.
        log_g = jax.random.loggamma(key_gamma, 0.5 * df, shape, dtype)
        t = normal * jnp.exp(0.5 * (jnp.log(0.5 * df) - log_g))
        return loc + scale * t

    def log_prob(self, value: Array) -> Array:
        value, nu, loc, scale = jnp.broadcast_arrays(value, self._df, self._loc, self._scale)
        z = (value - loc) / scale
        half_nu_plus_1 = 0.5 * (nu + 1.0)
        return (gammaln(half_nu_plus_1) - gammaln(0.5 * nu) - 0.5 * jnp.log(nu * jnp.pi)
                - jnp.log(scale) - half_nu_plus_1 * jnp.log1p(z * z / nu))

    def mean(self) -> Array:
        """μ where ν > 1, NaN where the mean does not exist."""
        return jnp.where(self._df > 1.0, self._loc, jnp.nan)

    def variance(self) -> Array:
        """σ² ν/(ν − 2) where ν > 2, ∞ where 1 < ν ≤ 2, NaN where ν ≤ 1."""
        # A safe denominator where ν ≤ 2, so the unused branch has no inf/NaN gradient.
        finite = self._scale**2 * self._df / jnp.where(self._df > 2.0, self._df - 2.0, 1.0)
        return jnp.where(self._df > 2.0, finite, jnp.where(self._df > 1.0, jnp.inf, jnp.nan))

    def mode(self) -> Array:
        return self._loc


def _log1m_tanh_sq(u: Array) -> Array:
    """log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u)), finite for any u.

    The naive form is log(0) = −inf once tanh(u) rounds to ±1 (|u| ≳ 9 in float32).
    """
    return 2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u))


class TanhNormal(distrax.Distribution):
    """a = tanh(u), u ~ N(loc, diag scale²): a Gaussian squashed into (−1, 1)ᴰ (seed 000, SAC).

    One event over the last axis of ``loc``/``scale`` (event shape (D,)), like
    ``distrax.Transformed(MultivariateNormalDiag(loc, scale), Block(Tanh(), 1))``. By the change of
    variables with da/du = diag(1 − tanh²(u)) (seed 000),

        log π(a) = log p(u) − Σ_d log(1 − tanh²(u_d)),        u = atanh(a).

    ``sample_and_log_prob`` evaluates this at the pre-tanh u it drew, so it stays exact where
    tanh(u) rounds to ±1. ``log_prob(a)`` of a given action must invert tanh: it clips a to the
    largest float below 1 in magnitude so that saturated actions get a finite log-prob.
    Sampling is reparameterized: a = tanh(loc + scale ⊙ ε), ε ~ N(0, I).
    """

    def __init__(self, loc: Array, scale: Array):
        check_values("TanhNormal loc", loc, positive=False)
        check_values("TanhNormal scale", scale, positive=True)
        self._loc, self._scale = _as_float_arrays(loc, scale)
        if self._loc.ndim < 1:
            raise EstimatorError(
                "TanhNormal needs loc/scale with at least one axis (the action dimension, "
                f"the event axis), got shape {self._loc.shape}; pass jnp.atleast_1d(loc)."
            )

    @property
    def loc(self) -> Array:
        return self._loc

    @property
    def scale(self) -> Array:
        return self._scale

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self._loc.shape[-1:]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self._loc.shape[:-1]

    def _pre_tanh_sample(self, key: PRNGKey, n: int) -> Array:
        eps = jax.random.normal(key, (n,) + self._loc.shape, self._loc.dtype)
        loc, scale = (jnp.broadcast_to(p, eps.shape) for p in (self._loc, self._scale))
        return loc + scale * eps

    def _pre_tanh_log_prob(self, u: Array) -> Array:
        u, loc, scale = jnp.broadcast_arrays(u, self._loc, self._scale)
        z = (u - loc) / scale
        log_normal = -0.5 * z * z - jnp.log(scale) - _HALF_LOG_2PI
        return jnp.sum(log_normal - _log1m_tanh_sq(u), axis=-1)

    def _sample_n(self, key: PRNGKey, n: int) -> Array:
        return jnp.tanh(self._pre_tanh_sample(key, n))

    def _sample_n_and_log_prob(self, key: PRNGKey, n: int) -> tuple[Array, Array]:
        u = self._pre_tanh_sample(key, n)
        return jnp.tanh(u), self._pre_tanh_log_prob(u)

    def log_prob(self, value: Array) -> Array:
        dtype = self._loc.dtype
        bound = jnp.nextafter(jnp.ones((), dtype), jnp.zeros((), dtype))
        a = jnp.clip(jnp.asarray(value, dtype), -bound, bound)
        # atanh(a) as ½(log1p(a) − log1p(−a)): exact near ±1, where (1 + a)/(1 − a) is not.
        u = 0.5 * (jnp.log1p(a) - jnp.log1p(-a))
        return self._pre_tanh_log_prob(u)

    def mode(self) -> Array:
        """tanh(loc): the image of the Gaussian's mode (the deterministic SAC action); not the
        mode of π itself, which the log-det term shifts."""
        return jnp.tanh(self._loc)


class Bernoulli(distrax.Bernoulli):
    """``distrax.Bernoulli`` whose sampler broadcasts explicitly.

    distrax compares the ``[n, *batch]`` uniforms with the ``[*batch]`` probabilities by implicit
    rank promotion, which ``jax_numpy_rank_promotion="raise"`` rejects for any batch of
    variables; this draws the same uniforms and compares them with ``probs[None]``, so samples
    are identical to distrax's for the same key (``tests/test_distributions.py``).
    """

    def __init__(self, logits: Array | None = None, probs: Array | None = None, dtype=int):
        super().__init__(logits=logits, probs=probs, dtype=dtype)
        self._sample_dtype = dtype

    def _sample_n(self, key: PRNGKey, n: int) -> Array:
        probs = self.probs
        uniform = jax.random.uniform(key, (n,) + probs.shape, probs.dtype)
        return (uniform < probs[None]).astype(self._sample_dtype)
