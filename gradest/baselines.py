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
* ``update(state, stats)`` → the next state from the batch (the moving average, the pooled
  optimal baseline); ``stats`` is what ``stats(f, scores)`` returned for each surrogate call of
  the batch (stacked on a leading axis), or the objective values f when ``stats`` is ``None``;
* ``group_size`` K, ``needs_scores`` (whether ``value`` needs per-draw ∇θ log q), ``per_coordinate``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradest._core import (Array, EmptyState, EstimatorError, State, check_positive, check_values,
                           no_state)

_TINY = 1e-12


class Baseline(NamedTuple):
    name: str
    group_size: int
    needs_scores: bool
    per_coordinate: bool
    init: Callable[[], State]
    value: Callable[[Array, Optional[Any], State], Any]
    update: Callable[[State, Any], State]
    stats: Optional[Callable[[Array, Optional[Any]], Any]] = None


def _unchanged(state: State, f: Array) -> State:
    del f
    return state


def _check_group_size(name: str, num_samples: int) -> int:
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise EstimatorError(
            f"{name} needs num_samples ≥ 2 draws per group to leave one out, got {num_samples!r}"
        )
    return num_samples


def _check_decay(decay: float) -> float:
    """A discount factor in (0, 1), or ``EstimatorError``."""
    d = check_positive("decay", decay)
    if d >= 1.0:
        raise EstimatorError(f"decay must lie in (0, 1), got {decay!r}")
    return d


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
        # Concrete values only: under jit b is traced and cannot be inspected (nor branched on).
        check_values("constant baseline", leaf, positive=False)
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


def _leave_one_out_sums(x: Array) -> Array:
    """Σ_{k≠i} x_k for each i along axis 0, from exclusive prefix and suffix sums: x_i is never
    added and subtracted again, so one dominant term (s² is heavy-tailed) cannot cancel the
    others away in float32, and the result does not depend on x_i even by rounding."""
    zero = jnp.zeros_like(x[:1])
    before = jnp.concatenate([zero, jnp.cumsum(x[:-1], axis=0)], axis=0)
    after = jnp.flip(jnp.concatenate([zero, jnp.cumsum(jnp.flip(x, 0)[:-1], axis=0)], axis=0), 0)
    return before + after


class PooledOptimalState(NamedTuple):
    """Discounted sums over earlier batches' draws: Σ f w and Σ w (per coordinate or scalar)."""

    weighted_f: Any
    weights: Any


def optimal(num_samples: int, per_coordinate: bool = False,
            decay: Optional[float] = None) -> Baseline:
    """The variance-optimal baseline of seed 003, estimated leave-one-out over K draws.

    With s_k = ∇θ log qθ(z_k) and weights w_k = ‖s_k‖² (scalar) or w_kj = s_kj² (per
    coordinate j), b* = E[f w]/E[w] is estimated for draw i from the other draws of its group,

        b_i = (P_f + Σ_{k≠i} f_k w_k) / (P_w + Σ_{k≠i} w_k),

    with P_f = P_w = 0 unless ``decay`` is given. Either way b_i does not depend on draw i, so
    the estimator stays unbiased.

    When it helps. Since E[f w] = b* E[w], the second moment of a draw's gradient (coordinate j,
    w = s_j²) is E[(f − b*)² w] + E[w] E[(b_i − b*)²], and without a baseline E[(f − b*)² w] +
    E[w] b*²: an estimated b helps only where its mean squared error is below b*². From K − 1
    draws of heavy-tailed weights (s² of a Gaussian's σ grows like ε⁴) the ratio's error is
    large: on x ~ N(1, 1) its per-draw variance exceeded no baseline's at K = 4 and 8 on
    exp(−x²), cos(kx) and kx, and at K = 64 still on cos(kx), where b* ≈ 0 (the table of
    ``python -m experiments.variance --parts=optimal``). It wins where b* is large against
    the spread of f, e.g. (x − k)², by more as K grows.

    ``decay`` pools across batches, as ``moving_average`` does for the mean: the state keeps
    discounted sums over all earlier batches' draws, P ← decay · P + Σ_batch (f w, w), updated by
    the estimator's ``update`` once per batch. Earlier batches are independent of this one, so
    the pooled b_i stays unbiased, and after a few batches it rests on thousands of draws: it
    matches the exact b* where θ moves slowly against 1/(1 − decay) batches. The first batch
    (empty state) is the unpooled estimate.

    Where no draw carries any score (a coordinate that cannot move) b = 0; its weight in the
    gradient is zero anyway. Needs per-draw score vectors (one extra backward pass per draw).
    """
    k = _check_group_size("optimal", num_samples)
    if decay is not None:
        decay = _check_decay(decay)

    def value(f, scores, state):
        w = _optimal_weights(scores, per_coordinate)
        if decay is None:
            return jax.tree.map(lambda wj: _optimal_ratio(wj, f, jnp.zeros(()), jnp.zeros(())), w)
        if per_coordinate:
            return jax.tree.map(lambda wj, pf, pw: _optimal_ratio(wj, f, pf, pw), w,
                                _like(state.weighted_f, w), _like(state.weights, w))
        return _optimal_ratio(w, f, state.weighted_f, state.weights)

    def update(state, batch):
        weighted_f, weights = batch
        return PooledOptimalState(_discounted_sum(decay, state.weighted_f, weighted_f),
                                  _discounted_sum(decay, state.weights, weights))

    name = "optimal_per_coordinate" if per_coordinate else "optimal"
    if decay is None:
        return Baseline(name, k, True, per_coordinate, no_state, value, _unchanged)
    return Baseline(f"{name}_pooled", k, True, per_coordinate, _empty_pooled_state, value, update,
                    lambda f, scores: _optimal_stats(f, _optimal_weights(scores, per_coordinate)))


def _empty_pooled_state() -> PooledOptimalState:
    """The pooled optimal baseline's first state. The sums' shapes follow θ's, known only from the
    scores: start from scalar zeros, which broadcast against any coordinate shape; the first
    update gives them θ's structure (so a lax.scan carry needs one update before the loop)."""
    return PooledOptimalState(jnp.zeros(()), jnp.zeros(()))


def _optimal_weights(scores: Any, per_coordinate: bool) -> Any:
    """The weights of b* = E[f w]/E[w] for each draw of a group: w_kj = s_kj² per coordinate (a
    pytree of ``[K, ...]`` leaves shaped like θ) or w_k = ‖s_k‖² (``[K]``)."""
    if per_coordinate:
        return jax.tree.map(lambda s: s**2, scores)
    return _score_sq_norms(scores)


def _along_draws(f: Array, w: Array) -> Array:
    """f (``[K]``) given w's coordinate axes explicitly, so that f · w never promotes ranks."""
    return jnp.reshape(f, (w.shape[0],) + (1,) * (w.ndim - 1))


def _optimal_ratio(w: Array, f: Array, pooled_f: Any, pooled_w: Any) -> Array:
    """b_i = (P_f + Σ_{k≠i} f_k w_k) / (P_w + Σ_{k≠i} w_k) for each draw i (w: ``[K, ...]``,
    f: ``[K]``), and 0 where no draw carries any weight."""
    num = jnp.broadcast_to(pooled_f, w.shape[1:])[None] + _leave_one_out_sums(_along_draws(f, w) * w)
    den = jnp.broadcast_to(pooled_w, w.shape[1:])[None] + _leave_one_out_sums(w)
    return jnp.where(den > _TINY, num / jnp.maximum(den, _TINY), 0.0)


def _optimal_stats(f: Array, weights: Any) -> tuple[Any, Any]:
    """Σ over a group's draws of (f w, w): what the pooled optimal baseline's update adds."""
    return (jax.tree.map(lambda w: jnp.sum(_along_draws(f, w) * w, axis=0), weights),
            jax.tree.map(lambda w: jnp.sum(w, axis=0), weights))


def _discounted_sum(decay: float, pooled: Any, batch: Any) -> Any:
    """decay · P + Σ over the batch's surrogate calls (its leading axis), leaf by leaf."""
    return jax.tree.map(lambda p, b: decay * p + jnp.sum(b, axis=0), _like(pooled, batch), batch)


def _like(state_leaf: Any, tree: Any) -> Any:
    """The initial scalar-zero state broadcast to ``tree``'s structure (one zero per leaf), or the
    state itself once it has that structure."""
    if jax.tree.structure(state_leaf) == jax.tree.structure(tree):
        return state_leaf
    return jax.tree.map(lambda _: state_leaf, tree)


class MovingAverageState(NamedTuple):
    biased_mean: Array
    count: Array


def moving_average(decay: float = 0.9) -> Baseline:
    """Exponential moving average of f over past batches, with Adam-style bias correction:

        m_t = decay · m_{t−1} + (1 − decay) · mean(f_batch_t),     b = m_t / (1 − decay^t)

    (b = 0 before the first update). It uses only earlier batches, so it is independent of the
    current draws and the estimator stays unbiased.
    """
    d = _check_decay(decay)

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


__all__ = ["Baseline", "EmptyState", "MovingAverageState", "PooledOptimalState", "none", "constant",
           "leave_one_out", "optimal", "moving_average"]
