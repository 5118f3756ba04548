"""Reparameterizable distributions that distrax lacks, with the distrax interface.

Both are ``distrax.Distribution`` subclasses (``sample(seed=..., sample_shape=...)``,
``log_prob``, ``sample_and_log_prob``), pure JAX, and jit/vmap/grad compatible:

* ``StudentT(df, loc, scale)``: elementwise Student-t, reparameterized in loc, scale *and* df
  through JAX's implicitly differentiated Gamma sampler.
* ``TanhNormal(loc, scale)``: a = tanh(u), u ~ N(loc, diag scale²), one event over the last axis
  (the SAC actor of seeds 000 and 002), with the log-det correction computed stably.

And the exact draws that the score-function estimator needs at the edge of the support
(``sample_with_latent``, ``log_prob_from_latent``): a float32 sample can round onto the edge
(a Beta draw to exactly 1, a small-shape Gamma draw to 0, tanh(u) to ±1) or past the largest
float (a Student-t draw with small df), where ``log_prob`` of the rounded sample is infinite or
wrong. The score needs log qθ at the draw itself, so it is computed from the draw's latent form
(log-space Gamma variates, the pre-tanh Gaussian), which no rounding reaches.

Parameters are checked at construction when they are concrete; traced values (inside ``jit`` or
``grad``) cannot be inspected and are trusted.
"""

from __future__ import annotations

import math
from typing import Any

import distrax
import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from gradest._core import Array, EstimatorError, PRNGKey, check_values

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
# |t| = |N| e^h of a Student-t draw is capped at |N| e^64 (e^64 ≈ 6e27): beyond, μ + σt and f(x)
# overflow float32 for moderate σ. Only the value f sees is capped; the score uses the exact h.
_MAX_LOG_T_SCALE = 64.0

sg = jax.lax.stop_gradient


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

    def _standard_draw(self, key: PRNGKey, n: int) -> tuple[Array, Array]:
        """N ~ N(0, 1) and h = ½(log(ν/2) − log G), G ~ Gamma(ν/2, 1): the draw t = N e^h."""
        shape = (n,) + self.batch_shape
        dtype = self._loc.dtype
        key_normal, key_gamma = jax.random.split(key)
        normal = jax.random.normal(key_normal, shape, dtype)
        # log G rather than G: G underflows to 0 for small ν (t would be ±inf), log G does not;
        # loggamma is implicitly differentiated w.r.t. its shape like gamma.
        log_g = jax.random.loggamma(key_gamma, 0.5 * self._df, shape, dtype)
        return normal, 0.5 * (jnp.log(0.5 * self._df)[None] - log_g)

    def _from_standard(self, normal: Array, log_scale: Array) -> Array:
        # The cap keeps x finite (μ + σ·inf would make f and the pathwise gradient NaN); the
        # capped draws have |x| > 10²⁷σ, where a bounded f has long reached its limit.
        t = normal * jnp.exp(jnp.minimum(log_scale, _MAX_LOG_T_SCALE))
        # Parameters get the sample axis explicitly (no implicit rank promotion).
        return self._loc[None] + self._scale[None] * t

    def _sample_n(self, key: PRNGKey, n: int) -> Array:
        return self._from_standard(*self._standard_draw(key, n))

    def sample_with_latent(self, seed: PRNGKey) -> tuple[Array, tuple[Array, Array]]:
        """One sample x and its exact latent form (N, h), x = μ + σ N e^h (see ``log_prob_from_latent``)."""
        normal, log_scale = self._standard_draw(seed, 1)
        return self._from_standard(normal, log_scale)[0], (normal[0], log_scale[0])

    def _log_density(self, log1p_sq: Array, nu: Array | None = None,
                     scale: Array | None = None) -> Array:
        """log p(x) from log(1 + z²/ν)."""
        nu = self._df if nu is None else nu
        scale = self._scale if scale is None else scale
        return (gammaln(0.5 * (nu + 1.0)) - gammaln(0.5 * nu) - 0.5 * jnp.log(nu * jnp.pi)
                - jnp.log(scale) - 0.5 * (nu + 1.0) * log1p_sq)

    def log_prob(self, value: Array) -> Array:
        value = jnp.asarray(value)
        # Sample axes in front of the batch axes: the parameters get them explicitly (no
        # implicit rank promotion).
        lead = (1,) * (value.ndim - len(self.batch_shape))
        nu, loc, scale = (jnp.reshape(jnp.broadcast_to(p, self.batch_shape), lead + self.batch_shape)
                          for p in (self._df, self._loc, self._scale))
        z = (value - loc) / scale
        # log(1 + r²), r = |z|/√ν, as 2 log r + log1p(r⁻²) for r > 1: z² overflows float32 once
        # |z| ≳ 2e19, which small-df draws reach. Each branch gets safe inputs so the unused one
        # has no inf/NaN gradient.
        r = jnp.abs(z) / jnp.sqrt(nu)
        big = r > 1.0
        r_small, r_big = jnp.where(big, 0.0, r), jnp.where(big, r, 1.0)
        return self._log_density(jnp.where(big, 2.0 * jnp.log(r_big) + jnp.log1p(r_big**-2),
                                           jnp.log1p(r_small**2)), nu, scale)

    def log_prob_from_latent(self, latent: tuple[Array, Array]) -> Array:
        """log pθ(x) at the draw x = μ₀ + σ₀ N e^h made with this distribution's parameters held
        fixed (μ₀ = sg(μ), σ₀ = sg(σ)), as a function of θ = (ν, μ, σ): exact even where x is
        past the float range, because log|z| is formed from log|t| = log|N| + h, never from x.

        With t = N e^h and z(θ) = (x − μ)/σ = (σ₀ t + μ₀ − μ)/σ,

            |t| > 1:  log|z| = log σ₀ + log|t| + log1p((μ₀ − μ)/(σ₀ t)) − log σ,
                      log(1 + z²/ν) = softplus(2 log|z| − log ν);
            |t| ≤ 1:  log1p(z²/ν) directly.
        """
        normal, log_scale = latent
        loc0, scale0 = sg(self._loc), sg(self._scale)
        log_abs_t = jnp.log(jnp.abs(normal)) + log_scale
        big = log_abs_t > 0.0
        sign = jnp.sign(normal)
        # Safe inputs for each branch: |t_small| ≤ 1 and |1/t_big| ≤ 1 whatever the draw.
        t_small = sign * jnp.exp(jnp.minimum(log_abs_t, 0.0))
        inv_t_big = sign * jnp.exp(-jnp.maximum(log_abs_t, 0.0))
        z_small = (loc0 + scale0 * t_small - self._loc) / self._scale
        log_abs_z_big = (jnp.log(scale0) + jnp.maximum(log_abs_t, 0.0)
                         + jnp.log1p((loc0 - self._loc) * inv_t_big / scale0) - jnp.log(self._scale))
        log1p_sq = jnp.where(big, jax.nn.softplus(2.0 * log_abs_z_big - jnp.log(self._df)),
                             jnp.log1p(z_small**2 / self._df))
        return self._log_density(log1p_sq)

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
        return self._loc[None] + self._scale[None] * eps

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

    def sample_with_latent(self, seed: PRNGKey) -> tuple[Array, Array]:
        """One action a = tanh(u) and its pre-tanh draw u (see ``log_prob_from_latent``)."""
        u = self._pre_tanh_sample(seed, 1)[0]
        return jnp.tanh(u), u

    def log_prob_from_latent(self, u: Array) -> Array:
        """log π(tanh(u)) from the pre-tanh draw u: exact where tanh(u) rounds to ±1, where
        ``log_prob`` of the rounded action would see a clipped u instead."""
        return self._pre_tanh_log_prob(u)

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


# --------------------------------------------------------------------------------------------
# Exact draws for the score function.
#
# ``sample_with_latent(dist, key)`` returns one sample z (what f sees) and a latent form of the
# same draw; ``log_prob_from_latent(dist, latent)`` returns the joint log qθ(z) computed from the
# latent, as a function of the parameters ``dist`` was built from (the draw held fixed). A
# distribution takes part by defining both as methods (``StudentT``, ``TanhNormal``); distrax's
# Gamma and Beta are drawn in log space below; any other distribution uses its own
# ``sample``/``log_prob`` (latent = z).


def _gamma_log_draw(concentration: Array, key: PRNGKey, shape: tuple[int, ...], dtype) -> Array:
    # jax.random.loggamma runs the sampler of jax.random.gamma on the same key in log space: the
    # same draw, but log G stays finite where G underflows to 0 (shape ≲ 0.1 does that often).
    return jax.random.loggamma(key, concentration, shape, dtype)


def sample_with_latent(dist: Any, key: PRNGKey) -> tuple[Array, Any]:
    """One sample z of ``dist`` and its latent form, for ``log_prob_from_latent`` (see above).

    * ``distrax.Gamma(α, β)``: latent y = log G − log β, z = e^y;
    * ``distrax.Beta(a, b)``: latent (log x, log(1 − x)) = (y_a, y_b) − logaddexp(y_a, y_b) from
      two log-Gamma draws, the construction of ``jax.random.beta``; z = exp(log x);
    * a distribution with ``sample_with_latent``/``log_prob_from_latent`` methods: its own;
    * anything else: z = dist.sample(seed=key), latent = z.
    """
    if hasattr(dist, "sample_with_latent"):
        return dist.sample_with_latent(key)
    if isinstance(dist, distrax.Gamma):
        log_z = (_gamma_log_draw(dist.concentration, key, dist.batch_shape, dist.concentration.dtype)
                 - jnp.log(dist.rate))
        return jnp.exp(log_z), log_z
    if isinstance(dist, distrax.Beta):
        key_a, key_b = jax.random.split(key)
        dtype = jnp.result_type(dist.alpha, dist.beta)
        shape = dist.batch_shape
        y_a = _gamma_log_draw(jnp.broadcast_to(dist.alpha, shape), key_a, shape, dtype)
        y_b = _gamma_log_draw(jnp.broadcast_to(dist.beta, shape), key_b, shape, dtype)
        log_total = jnp.logaddexp(y_a, y_b)
        log_x, log1m_x = y_a - log_total, y_b - log_total
        return jnp.exp(log_x), (log_x, log1m_x)
    z = dist.sample(seed=key)
    return z, z


def log_prob_from_latent(dist: Any, latent: Any) -> Array:
    """Joint log qθ(z) (summed over all axes) of a draw from ``sample_with_latent``.

    Gamma: α log β + (α − 1) y − β e^y − log Γ(α), y = log z. Beta: (a − 1) log x +
    (b − 1) log(1 − x) − log B(a, b). Both finite for any draw, so neither the log-density nor
    its gradient (the score ∂α = y + log β − ψ(α), ∂b = log(1 − x) − ψ(b) + ψ(a + b), ...)
    overflows where z rounds to 0 or 1.
    """
    if hasattr(dist, "log_prob_from_latent"):
        return jnp.sum(dist.log_prob_from_latent(latent))
    if isinstance(dist, distrax.Gamma):
        a, rate = dist.concentration, dist.rate
        return jnp.sum(a * jnp.log(rate) + (a - 1.0) * latent - rate * jnp.exp(latent) - gammaln(a))
    if isinstance(dist, distrax.Beta):
        log_x, log1m_x = latent
        a, b = dist.alpha, dist.beta
        return jnp.sum((a - 1.0) * log_x + (b - 1.0) * log1m_x
                       - (gammaln(a) + gammaln(b) - gammaln(a + b)))
    return jnp.sum(dist.log_prob(latent))
