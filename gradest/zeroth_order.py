"""Zeroth-order (Gaussian-smoothing, evolution-strategies) gradient estimator (seed 003).

For a scalar f and a point x, the zeroth-order gradient is

    ∇̃ₓ f(x) = E_{u ~ N(0, I)} [ (f(x + εu) − b) / ε · u ],

any b free of u leaving it unchanged since E[u] = 0. It needs no derivative of f, so it serves
non-differentiable objectives (accuracy through an argmax). By Stein's lemma it is exactly the
gradient of the smoothed objective f_ε(x) = E_u[f(x + εu)], and for differentiable f it tends to
∇f(x) as ε → 0. Baselines (seed 003):

* ``"none"``:    b = 0;
* ``"value"``:   b = f(x), one extra evaluation (f(x + εu) − f(x) = O(ε) cuts the variance);
* ``"optimal"``: b = E[f(x + εu) ‖u‖²] / E[‖u‖²], estimated leave-one-out over the directions so
  it stays independent of the direction it is applied to (needs ≥ 2 directions).

Antithetic pairs use (f(x + εu) − f(x − εu)) / (2ε) · u, in which any baseline cancels exactly.

Where x lives:

* ``make_dist=None``: x = θ itself (parameter space, seed 003's setting); f is a black box and is
  called as f(sg(θ), x + εu).
* a continuous ``make_dist``: x = z is a reparameterized sample of qθ (action space for SAC), and
  the surrogate chains the zeroth-order ∂f/∂z through dz/dθ: ∇θ = ∂f/∂θ|_direct + ĝᵀ ∂z/∂θ.

Surrogate: f(θ, sg(x)) + ⟨sg(ĝ), x − sg(x)⟩ (value f(x), gradient ĝ w.r.t. x).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradest._core import (EstimatorError, GradientEstimator, Traits, check_distribution,
                           check_hyperparameter, check_scalar_objective, keep_state, linear_term,
                           no_state, tree_vdot)

sg = jax.lax.stop_gradient

BASELINES = ("none", "value", "optimal")


def _normal_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
                                        for k, x in zip(keys, leaves)])


def _axpy(a, x, y):
    """y + a·x over pytrees."""
    return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


def _smoothing_point(key, params, make_dist, traits):
    """(key for the directions, the point x they perturb, θ as f sees it).

    Without ``make_dist`` x = θ and f sees sg(θ): the gradient comes from ĝ alone. With one, x is
    a reparameterized sample of qθ that stays differentiable, so the linear term chains ĝ through
    dz/dθ, and f sees θ itself for its direct dependence.
    """
    if make_dist is None:
        return key, params, sg(params)
    dist = make_dist(params)
    check_distribution(traits, dist)
    key_x, key_u = jax.random.split(key)
    return key_u, dist.sample(seed=key_x), params


def _baseline_values(baseline, fx, f_plus, us):
    """b for each of the M directions: 0 (``"none"``), f(x) (``"value"``), or b* estimated
    leave-one-out, b_i = Σ_{k≠i} f(x + εu_k) ‖u_k‖² / Σ_{k≠i} ‖u_k‖² (``"optimal"``)."""
    if baseline == "none":
        return jnp.zeros_like(f_plus)
    if baseline == "value":
        return jnp.broadcast_to(sg(fx), f_plus.shape)
    u_sq = jax.vmap(lambda u: tree_vdot(u, u))(us)
    return (jnp.sum(f_plus * u_sq) - f_plus * u_sq) / (jnp.sum(u_sq) - u_sq)

def zeroth_order(epsilon: float = 0.1, num_directions: int = 1, antithetic: bool = False,
                 baseline: str = "value") -> GradientEstimator:
    """Gaussian-smoothing estimator of ∇ₓ f with ``num_directions`` directions per sample.

    Args:
      epsilon: the smoothing scale ε > 0 (a number, or a traced scalar for a sweep).
      num_directions: M ≥ 1 directions u_1..u_M averaged per surrogate call (M pairs when
        antithetic).
      antithetic: use ±u pairs (central differences).
      baseline: ``"none"``, ``"value"`` (b = f(x)) or ``"optimal"`` (leave-one-out b*, M ≥ 2).
        Ignored with antithetic pairs, where it cancels.
    """
    eps = check_hyperparameter("epsilon ε", epsilon)
    if not isinstance(num_directions, int) or isinstance(num_directions, bool) or num_directions < 1:
        raise EstimatorError(f"num_directions must be an int ≥ 1, got {num_directions!r}")
    if baseline not in BASELINES:
        raise EstimatorError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if baseline == "optimal" and not antithetic and num_directions < 2:
        raise EstimatorError("the optimal baseline is estimated leave-one-out: num_directions ≥ 2")
    m = num_directions
    name = f"zeroth_order[{'antithetic' if antithetic else baseline}]"
    # f at x, then at x + εu for each direction (and at x − εu when antithetic).
    evaluations = 1 + (2 * m if antithetic else m)
    traits = Traits(name=name, unbiased=False, needs_differentiable_f=False, supports="continuous",
                    evaluations_per_call=evaluations)

    def surrogate(key, params, make_dist, f, state):
        del state
        key_u, x, theta = _smoothing_point(key, params, make_dist, traits)
        x0 = sg(x)
        fx = check_scalar_objective(f(theta, x0))
        us = jax.vmap(lambda kk: _normal_like(kk, x0))(jax.random.split(key_u, m))
        f_plus = jax.vmap(lambda u: sg(f(theta, _axpy(eps, u, x0))))(us)
        if antithetic:
            f_minus = jax.vmap(lambda u: sg(f(theta, _axpy(-eps, u, x0))))(us)
            coef = (f_plus - f_minus) / (2.0 * eps)
        else:
            coef = (f_plus - _baseline_values(baseline, fx, f_plus, us)) / eps
        g_hat = jax.tree.map(
            lambda u: jnp.mean(jnp.reshape(coef, (m,) + (1,) * (u.ndim - 1)) * u, axis=0), us)
        value = fx + linear_term(g_hat, x)
        return value, {"f": fx}

    return GradientEstimator(no_state, surrogate, keep_state, traits)

