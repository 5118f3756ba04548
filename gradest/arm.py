"""ARM (Yin & Zhou, 2019) and DisARM (Dong, Mnih & Tucker, 2020) for independent Bernoullis.

For b ~ Π_i Bernoulli(σ(φ_i)) with logits φ, one uniform vector u ~ U(0, 1)^D gives the
antithetic pair

    b = 1[u < σ(φ)],     b̃ = 1[1 − u < σ(φ)],

both exact Bernoulli(σ(φ)) samples. With f evaluated at both (2 function evaluations per sample),

    ARM:     ĝ_i = (f(b̃) − f(b)) (u_i − 1/2),
    DisARM:  ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|φ_i|),

are unbiased for ∂/∂φ_i E[f(b)]. DisARM is ARM with u integrated out given the pair (b, b̃)
(Rao-Blackwellization), so its variance is never larger (Dong et al., 2020, §3). ARM follows from
the augment-REINFORCE-merge construction (Yin & Zhou, 2019, Theorem 1); both use only values of
f, which need not be differentiable.

θ reaches the logits through ``make_dist`` and may also enter f directly; the surrogate is

    ½ (f(θ, b) + f(θ, b̃)) + ⟨sg(ĝ), φ − sg(φ)⟩,      b, b̃ without gradient,

whose value is the mean of f over the pair (an unbiased sample of E[f]) and whose gradient is
½ (∇θ f(θ, b) + ∇θ f(θ, b̃)) + ĝᵀ ∂φ/∂θ.
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp

from gradest._core import (EstimatorError, GradientEstimator, Traits, check_distribution,
                           check_scalar_objective, keep_state, linear_term, no_state)

sg = jax.lax.stop_gradient


def _antithetic(name: str, rule):
    """The estimator whose logit gradient ``rule(f_b, f_anti, b, b_anti, u, logits)`` gives."""
    traits = Traits(name=name, unbiased=True, needs_differentiable_f=False, supports="discrete",
                    samples_per_call=2)

    def surrogate(key, params, make_dist, f, state):
        del state
        dist = make_dist(params)
        check_distribution(traits, dist)
        if not isinstance(dist, distrax.Bernoulli):
            raise EstimatorError(f"{name} needs a distrax Bernoulli, got {type(dist).__name__}")
        logits = dist.logits
        prob = sg(jax.nn.sigmoid(logits))
        u = jax.random.uniform(key, logits.shape, logits.dtype)
        b = (u < prob).astype(logits.dtype)
        b_anti = (1.0 - u < prob).astype(logits.dtype)
        f_b = check_scalar_objective(f(params, b))
        f_anti = check_scalar_objective(f(params, b_anti))
        g = rule(sg(f_b), sg(f_anti), b, b_anti, u, sg(logits))
        value = 0.5 * (f_b + f_anti) + linear_term(g, logits)
        return value, {"f": 0.5 * (f_b + f_anti)}

    return GradientEstimator(no_state, surrogate, keep_state, traits)


def arm() -> GradientEstimator:
    """ARM: ĝ_i = (f(b̃) − f(b)) (u_i − ½); 2 evaluations of f per sample (module docstring)."""
    return _antithetic("arm", lambda f_b, f_anti, b, b_anti, u, logits:
                       (f_anti - f_b) * (u - 0.5))


def disarm() -> GradientEstimator:
    """DisARM: ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|φ_i|); 2 evaluations of f per
    sample (module docstring)."""
    def rule(f_b, f_anti, b, b_anti, u, logits):
        del u
        sign = 1.0 - 2.0 * b_anti  # (−1)^{b̃_i}
        differ = (b != b_anti).astype(logits.dtype)
        return 0.5 * (f_b - f_anti) * sign * differ * jax.nn.sigmoid(jnp.abs(logits))

    return _antithetic("disarm", rule)
