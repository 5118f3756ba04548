"""Pathwise (reparameterization) estimator.

If z = g(θ, ε) with ε ~ q(ε) free of θ (seeds 000, 001, 002, 004), then

    ∇θ E_{qθ}[f(θ, z)] = E_{q(ε)}[ ∇θ f(θ, g(θ, ε)) ],

and the per-sample surrogate is just f(θ, g(θ, ε)): autodiff through the sampler is the estimate.
It needs f differentiable in z and a reparameterizable distribution:

* diagonal Gaussian  z = μ + σ ⊙ ε                    (``distrax.Normal``, ``MultivariateNormalDiag``)
* full covariance    z = μ + L ε, L lower triangular  (``distrax.MultivariateNormalTri``, seed 000)
* tanh-squashed      a = tanh(μ + σ ⊙ ε)              (``gradest.distributions.TanhNormal``, SAC)
* Gamma, Beta, Student-t by implicit reparameterization: ∇θ z = −(∂F/∂θ)/(∂F/∂z) with F the CDF,
  which JAX's own ``random.gamma`` (and so ``random.beta``) implements; Student-t is built from a
  Gamma draw (``gradest.distributions.StudentT``).
"""

from __future__ import annotations

from gradest._core import (GradientEstimator, Traits, check_distribution, check_scalar_objective,
                           keep_state, no_state)


def pathwise() -> GradientEstimator:
    """The reparameterization estimator: surrogate f(θ, z) with z = dist.sample(seed=key) left
    differentiable. Raises ``EstimatorError`` (at trace time) on a discrete distribution."""
    traits = Traits(name="pathwise", unbiased=True, needs_differentiable_f=True,
                    supports="continuous")

    def surrogate(key, params, make_dist, f, state):
        del state
        dist = make_dist(params)
        check_distribution(traits, dist)
        # No stop_gradient: the path θ → z is the estimator.
        z = dist.sample(seed=key)
        value = check_scalar_objective(f(params, z))
        return value, {"f": value}

    return GradientEstimator(no_state, surrogate, keep_state, traits)
