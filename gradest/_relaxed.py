"""Perturbed logits of Bernoulli and categorical variables, and their conditional resampling.

Shared by REBAR / RELAX (``gradest.rebar``) and Gumbel-Rao (``gradest.gumbel_rao``). A discrete
sample is the hard threshold of a continuous, reparameterizable z (Tucker et al., 2017, §2):

* Bernoulli with logit l:  z = l + L,  L ~ Logistic(0, 1),  b = H(z) = 1[z > 0];
* categorical with log-probabilities log p = log_softmax(logits):  z = log p + G,  G ~ Gumbel(0, 1)
  i.i.d., b = one_hot(argmax z)  (Gumbel-Max, seed 001).

Their relaxations are σ(z/λ) and softmax(z/λ) at temperature λ > 0. Given b, z̃ ~ p(z | b) is
drawn by conditional reparameterization, differentiable in the logits (Tucker et al., 2017,
appendix; Paulus et al., 2021, §3), with v ~ U(0, 1):

* Bernoulli, with u = σ(−l) + v σ(l) if b = 1 and u = v σ(−l) if b = 0 (the uniform that made L
  restricted to the side of 0 that b says), z̃ = l + log u − log(1 − u), which simplifies to

      b = 1:  z̃ = softplus(l + log v) − log(1 − v),      b = 0:  z̃ = log v − softplus(log(1 − v) − l);

* categorical, the maximum of log p + G is Gumbel(log Σ p) = Gumbel(0) and independent of the
  argmax, and each other coordinate is a Gumbel(log p_j) truncated below it (memorylessness of
  exp(−z_j) ~ Exp(p_j)):

      z̃_b = −log(−log v_b),      z̃_j = −log(exp(−z̃_b) + E_j / p_j),  E_j = −log v_j ~ Exp(1).

Bernoulli samples are floats in {0, 1}; categorical samples are one-hot float vectors over the
last axis, so f sees the same kind of input at b, at σ(z/λ) and at softmax(z/λ).
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp

from gradest._core import Array, EstimatorError, PRNGKey

sg = jax.lax.stop_gradient

BERNOULLI, CATEGORICAL = "bernoulli", "categorical"


def kind_and_logits(name: str, dist) -> tuple[str, Array]:
    """``("bernoulli" | "categorical", logits)`` of a distrax Bernoulli, Categorical or
    OneHotCategorical; ``EstimatorError`` for anything else."""
    if isinstance(dist, distrax.Bernoulli):
        return BERNOULLI, dist.logits
    if isinstance(dist, (distrax.Categorical, distrax.OneHotCategorical)):
        return CATEGORICAL, dist.logits
    raise EstimatorError(
        f"{name} needs a distrax Bernoulli, Categorical or OneHotCategorical, got "
        f"{type(dist).__name__}"
    )


def perturb(key: PRNGKey, kind: str, logits: Array) -> Array:
    """z: logits plus Logistic noise (Bernoulli) or log-probabilities plus Gumbel noise."""
    if kind == BERNOULLI:
        return logits + jax.random.logistic(key, logits.shape, logits.dtype)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return log_p + jax.random.gumbel(key, logits.shape, logits.dtype)


def harden(kind: str, z: Array) -> Array:
    """b = H(z), without gradient: 1[z > 0], or one_hot(argmax z) over the last axis."""
    if kind == BERNOULLI:
        return sg((z > 0).astype(z.dtype))
    return sg(jax.nn.one_hot(jnp.argmax(z, axis=-1), z.shape[-1], dtype=z.dtype))


def conditional_perturb(key: PRNGKey, kind: str, logits: Array, b: Array) -> Array:
    """z̃ ~ p(z | H(z) = b), reparameterized: differentiable in ``logits`` (module docstring)."""
    # Open interval: log v and log(1 − v) stay finite.
    tiny = jnp.finfo(logits.dtype).tiny
    v = jax.random.uniform(key, logits.shape, logits.dtype, minval=tiny, maxval=1.0)
    if kind == BERNOULLI:
        log_v, log_1mv = jnp.log(v), jnp.log1p(-v)
        above = jax.nn.softplus(logits + log_v) - log_1mv
        below = log_v - jax.nn.softplus(log_1mv - logits)
        return jnp.where(b > 0.5, above, below)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    top = -jnp.log(-jnp.log(v))
    # The Gumbel of the argmax class, broadcast along the class axis.
    top_b = jnp.sum(b * top, axis=-1, keepdims=True)
    # −log(exp(−z_b) + E_j / p_j) in log-space: no overflow when p_j is tiny.
    others = -jnp.logaddexp(-top_b, jnp.log(-jnp.log(v)) - log_p)
    return jnp.where(b > 0.5, top_b, others)


def relax(kind: str, z: Array, temperature: Array) -> Array:
    """σ(z/λ) or softmax(z/λ) over the last axis."""
    if kind == BERNOULLI:
        return jax.nn.sigmoid(z / temperature)
    return jax.nn.softmax(z / temperature, axis=-1)


def log_prob(kind: str, logits: Array, b: Array) -> Array:
    """log q(b) summed over all variables, from the logits (b a 0/1 or one-hot float array)."""
    if kind == BERNOULLI:
        return jnp.sum(b * jax.nn.log_sigmoid(logits) + (1.0 - b) * jax.nn.log_sigmoid(-logits))
    return jnp.sum(b * jax.nn.log_softmax(logits, axis=-1))
