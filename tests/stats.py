"""Statistics the statistical tests share: a sample variance with its standard error, and the
check of a measured per-sample gradient variance against an exact (quadrature) one."""

import jax
import numpy as np

import gradest


def variance_and_stderr(per_sample):
    """Sample variance along axis 0 (per coordinate, with S/(S − 1)) and its standard error
    sqrt((m4 − m2²)/S) from the sample's second and fourth central moments: no normality is
    assumed, which matters for heavy-tailed per-sample gradients."""
    g = np.asarray(per_sample, np.float64)
    s = g.shape[0]
    c = g - g.mean(axis=0)
    m2, m4 = np.mean(c**2, axis=0), np.mean(c**4, axis=0)
    return m2 * s / (s - 1), np.sqrt((m4 - m2**2) / s)


def assert_variance_matches(est, problem, exact_var, key, num_samples, num_se, rtol=0.05):
    """The per-sample variance of ``est`` on a 1-D Gaussian ``problem`` (θ = μ, σ), measured over
    ``num_samples`` draws from ``key``, lies within ``num_se`` standard errors of the variance
    estimate of ``exact_var`` and within ``rtol`` of it, in both coordinates."""
    keys = jax.random.split(key, num_samples)
    grads, _, _ = jax.jit(gradest.per_sample_grads, static_argnums=(0, 3, 4))(
        est, keys, problem.params, problem.make_dist, problem.f, est.init())
    for j in ("mu", "sigma"):
        var, se = variance_and_stderr(grads[j])
        assert abs(var - exact_var[j]) < num_se * se, (est.traits.name, j, var, exact_var[j], se)
        assert abs(var / exact_var[j] - 1) < rtol, (est.traits.name, j, var, exact_var[j])
