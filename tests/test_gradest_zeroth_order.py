"""Zeroth-order (Gaussian-smoothing) estimator (seed 003).

Tolerances are multiples of the estimate's own standard error (fixed seeds), or closed forms.
"""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import gradest
from tests.stats import variance_and_stderr

KEY = jax.random.key(0)
X = jnp.array([0.3, -0.8, 1.1])
K = 2.0


def cos_f(p, x):
    del p
    return jnp.sum(jnp.cos(K * x))


def smoothed_cos_grad(x, eps):
    """∇ E_u[Σ cos(k(x + εu))] = −k sin(kx) · exp(−k²ε²/2), elementwise."""
    return -K * jnp.sin(K * x) * jnp.exp(-(K * eps) ** 2 / 2)


VARIANTS = [
    ("none", dict(num_directions=4, baseline="none")),
    ("value", dict(num_directions=4, baseline="value")),
    ("optimal", dict(num_directions=4, baseline="optimal")),
    ("antithetic", dict(num_directions=2, antithetic=True)),
]


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_unbiased_for_the_smoothed_objective(name, kwargs):
    """With a large ε = 0.5 the estimate agrees with ∇f_ε within 5 standard errors per
    coordinate, and lies > 5 standard errors from the unsmoothed ∇f (40k samples)."""
    eps = 0.5
    est = gradest.zeroth_order(eps, **kwargs)
    out = gradest.estimate_grad(est, KEY, X, None, cos_f, 40_000,
                                exact=smoothed_cos_grad(X, eps))
    assert float(out.comparison.max_abs_zscore) < 5.0, out.comparison.zscore
    true = -K * jnp.sin(K * X)
    z_true = jnp.abs(out.grad - true) / out.diagnostics.stderr
    assert float(jnp.max(z_true)) > 5.0


def test_tends_to_the_true_gradient_as_epsilon_shrinks():
    """On a smooth f the mean estimate approaches ∇f as ε → 0: the relative error shrinks with
    ε and at ε = 0.01 the estimate agrees with ∇f within 5 standard errors (antithetic)."""
    true = -K * jnp.sin(K * X)
    errors = []
    for eps in [0.8, 0.3, 0.01]:
        out = gradest.estimate_grad(gradest.zeroth_order(eps, 2, antithetic=True), KEY, X, None,
                                    cos_f, 40_000, exact=true)
        errors.append(float(out.comparison.relative_error))
    assert errors[0] > errors[1] > errors[2]
    assert float(out.comparison.max_abs_zscore) < 5.0


def test_antithetic_variance_on_a_quadratic_is_closed_form():
    """For f(x) = ½xᵀAx + bᵀx the antithetic pair gives (uᵀg)u exactly (g = ∇f, any ε; the
    f(x) baseline cancels), whose per-coordinate variance is (‖g‖² + g_j²)/M for M pairs.
    The sample variance of S = 40k per-sample estimates lies within 5 of its standard errors of
    that, the standard error of a sample variance being sqrt((m₄ − m₂²)/S) with m₂, m₄ the
    sample's central moments (no normality assumed: (uᵀg)u_j has heavy fourth moments); that
    standard error is below 3% of the variance, so the check is tight. The mean is within 5
    standard errors of g."""
    a = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 3.0]])
    b = jnp.array([0.1, -0.2, 0.4])

    def quad(p, x):
        del p
        return 0.5 * x @ a @ x + b @ x

    g = a @ X + b
    m, s = 3, 40_000
    est = gradest.zeroth_order(0.3, m, antithetic=True)
    grads, _, _ = jax.jit(gradest.per_sample_grads, static_argnums=(0, 3, 4))(
        est, jax.random.split(KEY, s), X, None, quad, est.init())
    variance, stderr = variance_and_stderr(grads)
    expected_var = (np.sum(np.asarray(g, np.float64) ** 2) + np.asarray(g, np.float64) ** 2) / m
    assert np.all(stderr < 0.03 * expected_var), (stderr, expected_var)
    assert np.all(np.abs(variance - expected_var) < 5 * stderr), (variance, expected_var, stderr)
    mean_stderr = np.sqrt(variance / s)
    assert np.all(np.abs(np.asarray(grads).mean(0) - g) < 5 * mean_stderr)


def test_optimal_baseline_cuts_variance_on_a_shifted_objective():
    """Adding a large constant to f leaves the gradient unchanged but inflates the variance of
    the baseline-free estimate; the f(x) and optimal baselines remove it."""
    def shifted(p, x):
        return cos_f(p, x) + 50.0

    variances = {}
    for baseline in ["none", "value", "optimal"]:
        out = gradest.estimate_grad(gradest.zeroth_order(0.2, 4, baseline=baseline), KEY, X, None,
                                    shifted, 20_000, diagnostics=True)
        variances[baseline] = float(out.diagnostics.total_variance)
    assert variances["value"] < variances["none"] / 100
    assert variances["optimal"] < variances["none"] / 100


def test_works_on_a_step_function():
    """f(x) = 1[x > 0] has zero gradient almost everywhere, but its Gaussian smoothing
    Φ(x/ε) has gradient φ(x/ε)/ε, which the estimate matches within 5 standard errors: the
    argmax-style objectives of seed 003."""
    x, eps = jnp.array([0.1]), 0.25

    def step(p, z):
        del p
        return jnp.sum((z > 0).astype(jnp.float32))

    out = gradest.estimate_grad(gradest.zeroth_order(eps, 4, baseline="optimal"), KEY, x, None,
                                step, 40_000, exact=norm.pdf(x / eps) / eps)
    assert float(out.comparison.max_abs_zscore) < 5.0
    assert jnp.all(jax.grad(lambda z: step(None, z))(x) == 0)  # autodiff sees nothing


def test_action_space_chains_through_the_reparameterized_sample():
    """With a distribution, ĝ estimates ∂f/∂z and is chained through z = μ + σε. For a quadratic
    f the smoothing does not move the gradient, so the estimate is unbiased for ∇θ E[f]:
    E[(z − 1)²] = (μ − 1)² + σ², gradient (2(μ − 1), 2σ), within 5 standard errors."""
    params = {"mu": jnp.array(0.3), "sigma": jnp.array(0.8)}
    out = gradest.estimate_grad(
        gradest.zeroth_order(0.1, 2, antithetic=True), KEY, params,
        lambda p: distrax.Normal(p["mu"], p["sigma"]), lambda p, z: (z - 1.0) ** 2, 40_000,
        exact={"mu": jnp.array(2 * (0.3 - 1.0)), "sigma": jnp.array(1.6)})
    assert float(out.comparison.max_abs_zscore) < 5.0


@pytest.mark.parametrize("kwargs", [dict(epsilon=0.0), dict(epsilon=-1.0), dict(epsilon=np.nan),
                                    dict(num_directions=0), dict(baseline="mean"),
                                    dict(baseline="optimal", num_directions=1)])
def test_bad_hyperparameters_raise(kwargs):
    with pytest.raises(gradest.EstimatorError):
        gradest.zeroth_order(**kwargs)
