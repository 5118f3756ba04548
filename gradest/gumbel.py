"""Gumbel-Max sampling, the Gumbel-Softmax relaxation and the straight-through estimator (seed 001).

Gumbel-Max: with g_i = −log(−log U_i), U_i ~ U(0, 1) i.i.d.,

    argmax_i (log p_i + g_i)  ~  Categorical(p)          (exact; seed 001 proves P(i = 1) = p_1).

Gumbel-Softmax (Jang et al., 2017; Maddison et al., 2017) replaces the argmax by a softmax at
temperature τ > 0,

    y_soft = softmax((log p + g) / τ),

differentiable in the logits; as τ → 0 it tends to the one-hot Gumbel-Max sample (less bias) while
the gradient's variance grows, so τ is annealed from 1 down to a floor (seed 001). Straight-through
uses the exact one-hot sample forward and the relaxed gradient backward:

    y = y_hard − sg(y_soft) + y_soft.

Both estimators pass a one-hot (or relaxed one-hot) vector to f, so f must accept one; with
``distrax.OneHotCategorical`` the score-function estimator passes one-hot vectors too and the same
f serves all. A Bernoulli is relaxed with the binary Concrete, y = σ((logit + L)/τ), L ~ Logistic.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Union

import distrax
import jax
import jax.numpy as jnp

from gradest._core import (Array, EstimatorError, GradientEstimator, PRNGKey, Traits,
                           check_distribution, check_hyperparameter, check_scalar_objective, positive_temperature)

sg = jax.lax.stop_gradient

Schedule = Callable[[Array], Array]


# --------------------------------------------------------------------------------------------
# Samplers.


def gumbel_max_sample(key: PRNGKey, logits: Array) -> Array:
    """An exact Categorical(softmax(logits)) sample (an index over the last axis) by Gumbel-Max."""
    logits = jnp.asarray(logits)
    return jnp.argmax(logits + jax.random.gumbel(key, logits.shape, logits.dtype), axis=-1)


def gumbel_softmax_sample(key: PRNGKey, logits: Array, temperature: float | Array,
                          hard: bool = False) -> Array:
    """A relaxed one-hot sample softmax((logits + g)/τ) over the last axis; with ``hard=True`` the
    straight-through sample y_hard − sg(y_soft) + y_soft (exactly one-hot forward)."""
    check_hyperparameter("temperature τ", temperature)
    logits = jnp.asarray(logits)
    perturbed = logits + jax.random.gumbel(key, logits.shape, logits.dtype)
    y_soft = jax.nn.softmax(perturbed / temperature, axis=-1)
    if not hard:
        return y_soft
    # argmax of the perturbed logits (not of y_soft) so the forward sample is exactly Gumbel-Max.
    y_hard = jax.nn.one_hot(jnp.argmax(perturbed, axis=-1), logits.shape[-1], dtype=y_soft.dtype)
    # Forward: y_hard. Backward: the gradient of y_soft.
    return y_hard - sg(y_soft) + y_soft


def binary_concrete_sample(key: PRNGKey, logits: Array, temperature: float | Array,
                           hard: bool = False) -> Array:
    """Relaxed Bernoulli(σ(logits)) sample σ((logits + L)/τ), L ~ Logistic(0, 1); ``hard`` gives
    the straight-through 0/1 sample."""
    check_hyperparameter("temperature τ", temperature)
    logits = jnp.asarray(logits)
    perturbed = logits + jax.random.logistic(key, logits.shape, logits.dtype)
    y_soft = jax.nn.sigmoid(perturbed / temperature)
    if not hard:
        return y_soft
    y_hard = (perturbed > 0).astype(y_soft.dtype)
    return y_hard - sg(y_soft) + y_soft


# --------------------------------------------------------------------------------------------
# Temperature schedules: step (number of estimator updates so far) -> τ. Their hyperparameters
# may be traced (a sweep under jit(vmap(...))); concrete ones are checked when built.


def constant_temperature(temperature: float | Array) -> Schedule:
    """τ_t = τ."""
    tau = check_hyperparameter("temperature τ", temperature)
    return lambda step: jnp.asarray(tau, jnp.float32)


def exponential_anneal(init: float | Array = 1.0, rate: float | Array = 1e-3,
                       floor: float | Array = 0.5) -> Schedule:
    """τ_t = max(floor, init · exp(−rate · t)): anneal from ``init`` (1 in seed 001) to a floor
    (Jang et al., 2017 use floor 0.5)."""
    init = check_hyperparameter("init temperature", init)
    floor = check_hyperparameter("floor temperature", floor)
    if not isinstance(rate, jax.core.Tracer):
        rate = float(rate)
        if not rate >= 0:
            raise EstimatorError(f"anneal rate must be ≥ 0, got {rate!r}")
    if isinstance(floor, float) and isinstance(init, float) and floor > init:
        raise EstimatorError(f"floor temperature {floor} exceeds the initial one {init}")
    return lambda step: jnp.maximum(floor, init * jnp.exp(-rate * jnp.asarray(step, jnp.float32)))


class GumbelState(NamedTuple):
    step: Array


def gumbel_softmax(temperature: Union[float, Schedule] = 1.0, hard: bool = False) -> GradientEstimator:
    """Gumbel-Softmax (``hard=False``) or straight-through Gumbel (``hard=True``) estimator.

    The surrogate is f(θ, y) with y the relaxed (or straight-through) one-hot sample of the
    categorical qθ; its gradient is biased for ∇θ E_q[f] (the bias vanishes as τ → 0). With
    ``hard=True`` the forward value is f at an exact categorical sample.

    Args:
      temperature: τ > 0 (a number or a traced scalar), or a schedule step -> τ
        (``exponential_anneal``); the step counts ``update`` calls and lives in the estimator
        state.
      hard: straight-through.
    """
    schedule = temperature if callable(temperature) else constant_temperature(temperature)
    name = "straight_through" if hard else "gumbel_softmax"
    traits = Traits(name=name, unbiased=False, needs_differentiable_f=True, supports="discrete")

    def init():
        return GumbelState(jnp.zeros((), jnp.int32))

    def surrogate(key, params, make_dist, f, state):
        dist = make_dist(params)
        check_distribution(traits, dist)
        tau = positive_temperature(schedule(state.step))
        if isinstance(dist, distrax.Bernoulli):
            y = binary_concrete_sample(key, dist.logits, tau, hard)
        elif isinstance(dist, (distrax.Categorical, distrax.OneHotCategorical)):
            y = gumbel_softmax_sample(key, dist.logits, tau, hard)
        else:
            raise EstimatorError(
                f"{name} relaxes distrax Categorical, OneHotCategorical or Bernoulli, got "
                f"{type(dist).__name__}"
            )
        value = check_scalar_objective(f(params, y))
        return value, {"f": value, "temperature": tau}

    def update(state, aux):
        del aux
        return GumbelState(state.step + 1)

    return GradientEstimator(init, surrogate, update, traits)


def straight_through(temperature: Union[float, Schedule] = 1.0) -> GradientEstimator:
    """Straight-through Gumbel: ``gumbel_softmax(temperature, hard=True)``."""
    return gumbel_softmax(temperature, hard=True)
