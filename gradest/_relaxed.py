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
    """z̃ ~ p(z | H(z) = b) from fresh noise, reparameterized: differentiable in ``logits``
    (module docstring). Independent of z given b: Gumbel-Rao averages several such draws."""
    # Open interval: log v and log(1 − v) stay finite.
    tiny = jnp.finfo(logits.dtype).tiny
    v = jax.random.uniform(key, logits.shape, logits.dtype, minval=tiny, maxval=1.0)
    if kind == BERNOULLI:
        return _bernoulli_given_b(logits, b, jnp.log(v), jnp.log1p(-v))
    top = -jnp.log(-jnp.log(v))
    # The Gumbel of the argmax class, broadcast along the class axis.
    top_b = jnp.sum(b * top, axis=-1, keepdims=True)
    return _categorical_given_b(logits, b, top_b, jnp.log(-jnp.log(v)))


def tied_conditional_perturb(kind: str, logits: Array, z: Array) -> Array:
    """z̃ ~ p(z | H(z) = b), b = H(z), drawn from the noise that made z ("tied" noise): z̃ = z
    in value, but its derivative in ``logits`` is the conditional reparameterization's, with that
    noise held fixed.

    Given b, the noise recovered from z is distributed as the fresh noise of
    ``conditional_perturb`` (independent of b), so z̃ is a valid conditional reparameterization,
    and E[c(z̃) ∇log q(b)] + E[∇c(z̃)] = ∇E[c(z)] still holds. The recovered noise is

    * Bernoulli, L = z − l:  b = 1: 1 − v = σ(−L)/σ(l);  b = 0: v = σ(L)/σ(−l)
      (the uniform u = σ(L) of z, rescaled to the side of σ(−l) that b says);
    * categorical:  −log v_b = exp(−z_b),  E_j = p_j (exp(−z_j) − exp(−z_b)), j ≠ b.

    A control variate then sees the same point through z and z̃, and the difference of its
    pathwise terms shrinks to c′(z) (∂z − ∂z̃): the correlation REBAR relies on (the reference
    implementations of Tucker et al., 2017 and Grathwohl et al., 2018 tie v to u the same way).
    """
    z = sg(z)
    b = harden(kind, z)
    if kind == BERNOULLI:
        noise = z - sg(logits)
        # Both logs are ≤ 0 in exact arithmetic; the minimum removes rounding above 0.
        log_1mv_above = jnp.minimum(
            jax.nn.log_sigmoid(-noise) - jax.nn.log_sigmoid(sg(logits)), 0.0)
        log_v_below = jnp.minimum(jax.nn.log_sigmoid(noise) - jax.nn.log_sigmoid(-sg(logits)), 0.0)
        above = b > 0.5
        log_v = jnp.where(above, _log1mexp(log_1mv_above), log_v_below)
        log_1mv = jnp.where(above, log_1mv_above, _log1mexp(log_v_below))
        z_cond = _bernoulli_given_b(logits, b, log_v, log_1mv)
    else:
        log_p = jax.nn.log_softmax(sg(logits), axis=-1)
        top_b = jnp.sum(b * z, axis=-1, keepdims=True)
        # log E_j = log p_j − z_j + log(1 − exp(z_j − z_b)); any finite number at j = b.
        log_e = jnp.where(b > 0.5, 0.0, log_p - z + _log1mexp(z - top_b))
        z_cond = _categorical_given_b(logits, b, top_b, log_e)
    # Exactly z in value (the formulas above reproduce it up to rounding), with z̃'s derivative.
    return z_cond + sg(z - z_cond)


def _bernoulli_given_b(logits: Array, b: Array, log_v: Array, log_1mv: Array) -> Array:
    """z̃ = l + log u − log(1 − u), u the uniform v moved to the side of σ(−l) that b says."""
    above = jax.nn.softplus(logits + log_v) - log_1mv
    below = log_v - jax.nn.softplus(log_1mv - logits)
    return jnp.where(b > 0.5, above, below)


def _categorical_given_b(logits: Array, b: Array, top_b: Array, log_e: Array) -> Array:
    """z̃_b = ``top_b`` (a Gumbel(0) draw), z̃_j = −log(exp(−z̃_b) + E_j / p_j) for j ≠ b."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    # In log-space: no overflow when p_j is tiny.
    others = -jnp.logaddexp(-top_b, log_e - log_p)
    return jnp.where(b > 0.5, top_b, others)


def _log1mexp(x: Array) -> Array:
    """log(1 − exp(x)) for x ≤ 0, accurate at both ends (Mächler, 2012); x is clipped below 0 so
    that x = 0 (a tie) gives a large negative number, not −inf."""
    x = jnp.minimum(x, -jnp.finfo(x.dtype).tiny)
    return jnp.where(x > -0.6931471805599453, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


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
