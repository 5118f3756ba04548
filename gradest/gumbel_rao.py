"""Gumbel-Rao: the Rao-Blackwellized straight-through estimator (Paulus, Maddison & Krause, 2021).

Straight-through Gumbel (seed 001) uses the exact sample b = H(z) forward and the gradient of the
relaxation y = softmax(z/τ) backward, with z the very noise that produced b:
∇θ ≈ (∂f/∂y)|_{y=b} · ∂y/∂θ. Its backward pass depends on z beyond b; Gumbel-Rao replaces ∂y/∂θ
by its conditional expectation given b, estimated with K conditional draws of the noise,
G̃_k ~ p(G | b) (``gradest._relaxed``), each held fixed as straight-through holds G:

    ĝ = (∂f/∂y)|_{y=b} · (1/K) Σ_k ∂ softmax((logits + G̃_k)/τ)/∂θ,

    surrogate:  f(θ, b − sg(ȳ) + ȳ),   ȳ = (1/K) Σ_k softmax((logits + G̃_k)/τ)

(σ((l + L̃_k)/τ) with Logistic noise for a Bernoulli).

Its mean equals straight-through's (same expectation of the backward pass given b) and, by the
law of total variance, its variance is at most straight-through's, falling with K; like
straight-through it is biased for ∇θ E[f(b)] (the bias → 0 as τ → 0). One evaluation of f per
sample, whatever K: the K relaxed samples enter only the backward pass.
"""

from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp

from gradest import _relaxed
from gradest._core import (EstimatorError, GradientEstimator, Traits, check_distribution,
                           check_scalar_objective)
from gradest.gumbel import GumbelState, Schedule, constant_temperature

sg = jax.lax.stop_gradient


def gumbel_rao(temperature: Union[float, Schedule] = 1.0, num_samples: int = 10) -> GradientEstimator:
    """Gumbel-Rao with K = ``num_samples`` conditional relaxations per sample.

    Args:
      temperature: τ > 0, or a schedule step -> τ (as for ``gumbel_softmax``; the step counts
        ``update`` calls and lives in the state).
      num_samples: K ≥ 1 conditional draws z̃_k averaged in the backward pass (K = 1 has
        straight-through's distribution).
    """
    schedule = temperature if callable(temperature) else constant_temperature(temperature)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise EstimatorError(f"gumbel_rao needs num_samples ≥ 1 (an int), got {num_samples!r}")
    traits = Traits(name="gumbel_rao", unbiased=False, needs_differentiable_f=True,
                    supports="discrete")

    def init():
        return GumbelState(jnp.zeros((), jnp.int32))

    def surrogate(key, params, make_dist, f, state):
        dist = make_dist(params)
        check_distribution(traits, dist)
        kind, logits = _relaxed.kind_and_logits(traits.name, dist)
        tau = schedule(state.step)
        key_b, key_cond = jax.random.split(key)
        b = _relaxed.harden(kind, _relaxed.perturb(key_b, kind, sg(logits)))

        def relaxed_given_b(k):
            # The straight-through Jacobian is that of softmax((logits + G)/τ) with the noise G
            # held fixed, evaluated at G ~ G | b: the conditional draw enters as a constant
            # (unlike REBAR, which differentiates the conditional sampler itself).
            noise = sg(_relaxed.conditional_perturb(k, kind, logits, b) - logits)
            return _relaxed.relax(kind, logits + noise, tau)

        y_bar = jnp.mean(jax.vmap(relaxed_given_b)(jax.random.split(key_cond, num_samples)),
                         axis=0)
        # Forward: the exact sample b. Backward: the gradient of the averaged relaxation.
        value = check_scalar_objective(f(params, b - sg(y_bar) + y_bar))
        return value, {"f": value, "temperature": tau}

    def update(state, aux):
        del aux
        return GumbelState(state.step + 1)

    return GradientEstimator(init, surrogate, update, traits)
