"""Baselines (control variates) for the score-function estimator.

For any b that does not depend on the sample z it is scored against,

    E_q[(f(z) − b) ∇θ log qθ(z)] = E_q[f(z) ∇θ log qθ(z)] − b ∇θ Σ_z qθ(z) = E_q[f ∇θ log q],

so subtracting b keeps the estimator unbiased while it can cut its variance (seeds 002, 003, 004).
Minimising the second moment E[(f − b)² ‖∇ log q‖²] over b gives the optimal baseline of seed 003

    b* = E[f ‖∇θ log q‖²] / E[‖∇θ log q‖²],

and, one coordinate j of θ at a time, b*_j = E[f (∂_j log q)²] / E[(∂_j log q)²].

Baselines estimated from the same batch (the mean of f, b*) would correlate with the sample they
are subtracted from and bias the estimate; here they are computed *leave-one-out* over a group of
K draws, b_i = statistic of the other K − 1 draws, which keeps them independent of draw i and the
estimator exactly unbiased. One call of the score-function surrogate then consumes K draws.

A baseline is a bundle of pure functions:

* ``value(f, scores, state)`` → b for each of the K draws of a group: shape ``[K]`` for a scalar
  baseline, or a pytree shaped like θ with a leading ``K`` axis for a per-coordinate one;
* ``update(state, f)`` → the next state from the batch's objective values (the moving average);
* ``group_size`` K, ``needs_scores`` (whether ``value`` needs per-draw ∇θ log q), ``per_coordinate``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradest._core import Array, EmptyState, EstimatorError, State, check_positive, no_state

_TINY = 1e-12


class Baseline(NamedTuple):
    name: str
    group_size: int
    needs_scores: bool
    per_coordinate: bool
    init: Callable[[], State]
    value: Callable[[Array, Optional[Any], State], Any]
    update: Callable[[State, Array], State]


def _unchanged(state: State, f: Array) -> State:
    del f
    return state


def _check_group_size(name: str, num_samples: int) -> int:
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise EstimatorError(
            f"{name} needs num_samples ≥ 2 draws per group to leave one out, got {num_samples!r}"
        )
    return num_samples


def none() -> Baseline:
    """b = 0: the plain score-function (REINFORCE) estimator f(z) ∇θ log qθ(z)."""
    return Baseline("none", 1, False, False, no_state,
                    lambda f, scores, state: jnp.zeros_like(f), _unchanged)


def constant(b: Any) -> Baseline:
    """A fixed baseline: a scalar, or a pytree shaped like θ for one baseline per coordinate;
    concrete or traced (a sweep over b is one ``jit(vmap(...))``).

    Passing the exact E_q[f] gives the 'mean baseline' of Mohamed et al. (2020, §3); passing the
    exact b* (``gradest.testing.exact_optimal_baseline``) gives the optimal one.
    """
    leaves = jax.tree.leaves(b)
    if not leaves:
        raise EstimatorError("constant baseline needs a value")
    for leaf in leaves:
        # A traced b (a sweep under jit(vmap(...))) is known only at run time; numpy, not jnp,
        # for a concrete one: inside a trace jnp would make even a Python float a tracer.
        if not isinstance(leaf, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(leaf))):
            raise EstimatorError(f"constant baseline must be finite, got {b!r}")
    # A bare number is one baseline for all coordinates; a pytree (or an array) shaped like θ
    # gives one per coordinate.
    per_coordinate = not jax.tree_util.treedef_is_leaf(jax.tree.structure(b)) or jnp.ndim(b) > 0

    def value(f, scores, state):
        del scores, state
        if per_coordinate:
            return jax.tree.map(lambda x: jnp.broadcast_to(x, f.shape + jnp.shape(x)), b)
        return jnp.full_like(f, b)

    return Baseline("constant", 1, False, per_coordinate, no_state, value, _unchanged)


def leave_one_out(num_samples: int) -> Baseline:
    """Batch-mean baseline in leave-one-out form: b_i = (Σ_k f_k − f_i) / (K − 1).

    This is the RLOO estimator (Kool et al., 2019); it equals the mean baseline of seed 003,
    b = E[f], estimated without the draw it is applied to, so it stays unbiased.
    """
    k = _check_group_size("leave_one_out", num_samples)

    def value(f, scores, state):
        del scores, state
        return (jnp.sum(f) - f) / (k - 1)

    return Baseline("leave_one_out", k, False, False, no_state, value, _unchanged)


def _score_sq_norms(scores: Any) -> Array:
    """‖∇θ log q(z_i)‖² for each draw i of a group (scores have a leading K axis)."""
    return sum(jnp.sum(jnp.reshape(s, (s.shape[0], -1)) ** 2, axis=1) for s in jax.tree.leaves(scores))


def optimal(num_samples: int, per_coordinate: bool = False) -> Baseline:
    """The variance-optimal baseline of seed 003, estimated leave-one-out over K draws.

    Scalar:           b_i   = Σ_{k≠i} f_k ‖s_k‖²   / Σ_{k≠i} ‖s_k‖²,
    per coordinate j: b_ij  = Σ_{k≠i} f_k s_kj²    / Σ_{k≠i} s_kj²,       s_k = ∇θ log qθ(z_k).

    Needs per-draw score vectors (one extra backward pass per draw).
    """
    k = _check_group_size("optimal", num_samples)

    def loo_ratio(weights, f):
        # weights: [K, ...]; f: [K]; broadcast f over the coordinate axes.
        fw = jnp.reshape(f, (k,) + (1,) * (weights.ndim - 1)) * weights
        num = jnp.sum(fw, axis=0, keepdims=True) - fw
        den = jnp.sum(weights, axis=0, keepdims=True) - weights
        # Where the other draws carry no score (a coordinate that cannot move), fall back to
        # the leave-one-out mean; its weight in the gradient is zero anyway.
        loo_mean = jnp.reshape((jnp.sum(f) - f) / (k - 1), (k,) + (1,) * (weights.ndim - 1))
        return jnp.where(den > _TINY, num / jnp.maximum(den, _TINY), loo_mean)

    def value(f, scores, state):
        del state
        if per_coordinate:
            return jax.tree.map(lambda s: loo_ratio(s**2, f), scores)
        return loo_ratio(_score_sq_norms(scores), f)

    name = "optimal_per_coordinate" if per_coordinate else "optimal"
    return Baseline(name, k, True, per_coordinate, no_state, value, _unchanged)


class MovingAverageState(NamedTuple):
    biased_mean: Array
    count: Array


def moving_average(decay: float = 0.9) -> Baseline:
    """Exponential moving average of f over past batches, with Adam-style bias correction:

        m_t = decay · m_{t−1} + (1 − decay) · mean(f_batch_t),     b = m_t / (1 − decay^t)

    (b = 0 before the first update). It uses only earlier batches, so it is independent of the
    current draws and the estimator stays unbiased.
    """
    d = check_positive("decay", decay)
    if d >= 1.0:
        raise EstimatorError(f"decay must lie in (0, 1), got {decay!r}")

    def init():
        return MovingAverageState(jnp.zeros(()), jnp.zeros((), jnp.int32))

    def value(f, scores, state):
        del scores
        correction = 1.0 - d ** state.count.astype(jnp.float32)
        b = jnp.where(state.count > 0, state.biased_mean / jnp.maximum(correction, _TINY), 0.0)
        return jnp.full_like(f, b)

    def update(state, f):
        mean = d * state.biased_mean + (1.0 - d) * jnp.mean(f)
        return MovingAverageState(mean, state.count + 1)

    return Baseline("moving_average", 1, False, False, init, value, update)


__all__ = ["Baseline", "EmptyState", "MovingAverageState", "none", "constant", "leave_one_out",
           "optimal", "moving_average"]
