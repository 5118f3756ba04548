"""Exact enumeration: the expectation over a small categorical's whole support.

For qθ = Categorical(πθ) over K outcomes the expectation is a finite sum, and so is its gradient:

    E_{qθ}[f(θ, z)] = Σ_k πθ(k) f(θ, k),
    ∇θ E_{qθ}[f(θ, z)] = Σ_k [ ∇θ πθ(k) f(θ, k) + πθ(k) ∇θ f(θ, k) ].

The surrogate is the sum itself: its value is E_q[f] (a "sample" with zero variance) and its
gradient the exact gradient, so it keeps the contract of every estimator (DESIGN.md §3) and serves
where one is expected, e.g. discrete SAC's actor (Christodoulou, 2019), at the cost of K
evaluations of f per call. The key is not used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradest._core import (EstimatorError, GradientEstimator, Traits, check_distribution,
                           check_scalar_objective, keep_state, no_state)


def _support(dist) -> jax.Array:
    """The outcomes of a single categorical in the form its ``log_prob`` takes them: one-hot rows
    (``distrax.OneHotCategorical``) or indices."""
    logits = jnp.asarray(dist.logits)
    if logits.ndim != 1:
        raise EstimatorError(
            f"exact_enumeration needs one categorical (logits of shape [K]), got logits of shape "
            f"{logits.shape}; vmap over a batch of distributions outside the surrogate")
    num = logits.shape[0]
    dtype = getattr(dist, "dtype", jnp.int32)
    if tuple(getattr(dist, "event_shape", ())) == (num,):   # one-hot outcomes
        return jnp.eye(num, dtype=dtype)
    return jnp.arange(num, dtype=dtype)


def exact_enumeration() -> GradientEstimator:
    """The exact expectation over a categorical's support: surrogate Σ_k πθ(k) f(θ, z_k), with
    z_k the k-th outcome (an index, or a one-hot vector for ``OneHotCategorical``). Unbiased
    with zero variance; needs the distribution's ``logits`` and ``K`` evaluations of f."""
    traits = Traits(name="exact_enumeration", unbiased=True, needs_differentiable_f=False,
                    supports="discrete")

    def surrogate(key, params, make_dist, f, state):
        del key, state
        dist = make_dist(params)
        check_distribution(traits, dist)
        support = _support(dist)
        fz = jax.vmap(lambda z: check_scalar_objective(f(params, z)))(support)
        # Both factors keep their gradients: ∇π · f is the score part, π · ∇f the direct part.
        value = jnp.sum(jax.nn.softmax(dist.logits) * fz)
        return value, {"f": value}

    return GradientEstimator(no_state, surrogate, keep_state, traits)
