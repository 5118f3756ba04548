"""Tests of gradest.testing: the closed forms that every estimator test trusts are themselves right.

Statistical tests use fixed seeds and a tolerance of 5 standard errors computed from the same
samples (a false failure has probability ~6e-7 per check under normality).
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gradest import testing

GAUSSIAN_F = ["linear", "quadratic", "shifted_square", "exp", "cos"]

# Problems grouped by sampling distribution (same make_dist and θ), so one set of draws checks
# every objective of a group; the defaults of all_problems() are the group heads.
GROUPS = {
    "gaussian": [testing.gaussian(name, k=2.0, mu=0.3, sigma=0.7) for name in GAUSSIAN_F]
    + [testing.gaussian_direct(mu=0.3, sigma=0.7)],
    "gaussian_diag": [testing.gaussian_diag()],
    "mvn_quadratic": [testing.mvn_quadratic()],
    "categorical": [testing.categorical(),
                    testing.categorical(f=lambda params, y: jnp.dot(y, params["logits"])**2)],
    "bernoulli": [testing.bernoulli(),
                  testing.bernoulli(f=lambda params, y: jnp.sin(params["logit"] + 2.0 * y))],
    "bernoulli_vector": [testing.bernoulli_vector()],
    "categorical_vector": [testing.categorical_vector()],
    "gamma": [testing.gamma(f_name=name) for name in ("square", "identity", "log", "exp_neg")],
    "beta": [testing.beta(f_name=name) for name in ("square", "identity")],
    "student_t": [testing.student_t(), testing.student_t(f_name="ratio")],
    "tanh_normal": [testing.tanh_normal()],
}
PROBLEMS = [p for group in GROUPS.values() for p in group]
NON_1D_GAUSSIAN = [p for p in PROBLEMS if p.meta["family"] != "gaussian"]


@pytest.mark.parametrize("group", list(GROUPS))
def test_value_matches_monte_carlo(group):
    """value(θ) lies within 5 standard errors of a 200k-sample average of f (fixed seed)."""
    problems = GROUPS[group]
    params, make_dist = problems[0].params, problems[0].make_dist
    num = 200_000

    @jax.jit
    def samples_of_f(key):
        z = make_dist(params).sample(seed=key, sample_shape=num)
        return [jax.vmap(lambda zi, p=p: p.f(params, zi))(z) for p in problems]

    for problem, fz in zip(problems, samples_of_f(jax.random.key(0))):
        chex.assert_shape(fz, (num,))  # f returned a scalar per draw
        fz = np.asarray(fz, np.float64)
        stderr = fz.std(ddof=1) / math.sqrt(num)
        exact = float(problem.value(params))
        assert abs(fz.mean() - exact) <= 5 * stderr + 1e-6, (problem.name, fz.mean(), exact, stderr)


@pytest.mark.parametrize("problem", NON_1D_GAUSSIAN, ids=lambda p: p.name)
def test_exact_grad_matches_finite_differences(problem):
    """exact_grad (float32 autodiff, shaped like the float32 θ) equals central differences of
    value in float64. (The 1-D Gaussian gradients are checked against quadrature below.)"""
    for leaf in jax.tree.leaves(problem.params):
        assert leaf.dtype == jnp.float32
    grad = jax.jit(lambda params: testing.exact_grad(problem, params))(problem.params)
    chex.assert_trees_all_equal_shapes(grad, problem.params)
    h = 1e-6
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree.map(lambda x: np.asarray(x, np.float64),
                                                  problem.params))
        steps = h * np.eye(flat.size)
        value = jax.jit(jax.vmap(lambda v: problem.value(unravel(v))))
        up, down = value(flat[None] + steps), value(flat[None] - steps)
        fd = (np.asarray(up) - np.asarray(down)) / (2 * h)
    np.testing.assert_allclose(ravel_pytree(grad)[0], fd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("f_name", GAUSSIAN_F)
@pytest.mark.parametrize("k,mu,sigma", [(1.0, 1.0, 1.0), (5.0, 0.3, 0.6), (4.0, -0.5, 2.0)])
def test_gaussian_closed_forms_match_quadrature(f_name, k, mu, sigma):
    """value = E[f] and exact_grad = E[f · ∇θ log q] (score identity), both by quadrature."""
    problem = testing.gaussian(f_name, k=k, mu=mu, sigma=sigma)
    np.testing.assert_allclose(float(problem.value(problem.params)),
                               testing.exact_mean_value(problem), rtol=1e-5, atol=1e-6)
    quad = testing._quadrature(problem, 8001)
    score_grad = {j: quad.mean(quad.f * s) for j, s in quad.score.items()}
    grad = testing.exact_grad(problem)
    for j in ("mu", "sigma"):
        np.testing.assert_allclose(float(grad[j]), score_grad[j], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("f_name", GAUSSIAN_F)
@pytest.mark.parametrize("k,sigma", [(5.0, 1.0), (10.0, 2.0)])
def test_quadrature_converged(f_name, k, sigma):
    """4001 and 8001 nodes agree to 1e-8 relative on every quadrature output, including the
    narrow exp(−kx²) peaks that Gauss–Hermite misses."""
    problem = testing.gaussian(f_name, k=k, mu=0.5, sigma=sigma)

    def outputs(n):
        return [testing.exact_mean_value(problem, num_nodes=n),
                testing.exact_variance(problem, "score_function", 0.3, num_nodes=n),
                testing.exact_variance(problem, "pathwise", num_nodes=n),
                testing.exact_optimal_baseline(problem, num_nodes=n),
                testing.exact_optimal_baseline(problem, per_coordinate=True, num_nodes=n)]

    chex.assert_trees_all_close(outputs(4001), outputs(8001), rtol=1e-8, atol=1e-12)


def _per_sample_grads(problem, estimator, baseline, eps):
    """The per-sample estimates written out by hand, x = μ + σε, in float32 JAX."""
    mu, sigma = problem.params["mu"], problem.params["sigma"]
    x = mu + sigma * eps
    if estimator == "pathwise":
        df = jax.vmap(jax.grad(lambda xi: problem.f(problem.params, xi)))(x)
        return {"mu": df, "sigma": df * eps}
    fx = jax.vmap(lambda xi: problem.f(problem.params, xi))(x)
    b = baseline if isinstance(baseline, dict) else {"mu": baseline, "sigma": baseline}
    return {"mu": (fx - b["mu"]) * (x - mu) / sigma**2,
            "sigma": (fx - b["sigma"]) * ((x - mu)**2 - sigma**2) / sigma**3}


@pytest.mark.parametrize("f_name", GAUSSIAN_F)
def test_exact_variance_matches_monte_carlo(f_name):
    """exact_variance is within 5 standard errors (a few percent) of the sample variance of 5e5
    hand-written per-sample estimates, for pathwise and for score function with no, a scalar and
    a per-coordinate baseline; the standard error of a variance is sqrt((m₄ − v²)/N)."""
    problem = testing.gaussian(f_name, k=1.5, mu=0.5, sigma=0.8)
    num = 500_000
    eps = jax.random.normal(jax.random.key(2), (num,))
    configs = [("pathwise", 0.0), ("score_function", 0.0), ("score_function", 0.7),
               ("score_function", {"mu": -0.4, "sigma": 1.3})]
    all_grads = jax.jit(lambda e: [_per_sample_grads(problem, *c, e) for c in configs])(eps)
    for (estimator, baseline), grads in zip(configs, all_grads):
        exact = testing.exact_variance(problem, estimator, baseline)
        for j, g in grads.items():
            g = np.asarray(g, np.float64)
            centred = g - g.mean()
            var = np.mean(centred**2)
            stderr = math.sqrt(max(np.mean(centred**4) - var**2, 0.0) / num)
            assert stderr <= 0.05 * var + 1e-9, (estimator, j, stderr, var)
            assert abs(var - exact[j]) <= 5 * stderr + 1e-6, (estimator, j, var, exact[j], stderr)


@pytest.mark.parametrize("f_name", GAUSSIAN_F)
def test_optimal_baseline_minimizes_variance(f_name):
    """b* minimizes the total score-function variance, b*_j each coordinate's variance, and
    exact_mean_value equals value (the 'mean baseline')."""
    problem = testing.gaussian(f_name, k=1.5, mu=0.5, sigma=0.8)
    variance = lambda b: testing.exact_variance(problem, "score_function", b)  # noqa: E731
    b_star = testing.exact_optimal_baseline(problem)
    total = lambda b: sum(variance(b).values())  # noqa: E731
    for delta in (-0.1, 0.1):
        assert total(b_star) < total(b_star + delta)
    b_coord = testing.exact_optimal_baseline(problem, per_coordinate=True)
    for j in ("mu", "sigma"):
        for delta in (-0.1, 0.1):
            shifted = dict(b_coord, **{j: b_coord[j] + delta})
            assert variance(b_coord)[j] < variance(shifted)[j]


def test_quadrature_rejects_other_problems():
    for fn in (testing.exact_mean_value, testing.exact_optimal_baseline,
               lambda p: testing.exact_variance(p, "pathwise")):
        for problem in (testing.gamma(), testing.gaussian_diag(), testing.gaussian_direct()):
            with pytest.raises(ValueError, match="1-D"):
                fn(problem)
    with pytest.raises(ValueError, match="estimator"):
        testing.exact_variance(testing.gaussian(), "gumbel")


@pytest.mark.parametrize("build", [
    lambda: testing.gaussian("sine"),
    lambda: testing.gaussian("cos", sigma=0.0),
    lambda: testing.gaussian("exp", k=-1.0),
    lambda: testing.gamma(f_name="cube"),
    lambda: testing.gamma(rate=-1.0),
    lambda: testing.beta(a=0.0),
    lambda: testing.student_t(df=2.0),
    lambda: testing.student_t(f_name="cube"),
    lambda: testing.categorical(values=[1.0, 2.0], f=lambda p, y: y[0]),
    lambda: testing.categorical(values=[1.0, 2.0]),
    lambda: testing.bernoulli(f0=1.0, f=lambda p, y: y),
    lambda: testing.bernoulli_vector(dim=1),
    lambda: testing.categorical_vector(num_classes=1),
])
def test_bad_arguments_raise(build):
    with pytest.raises(ValueError):
        build()


def test_all_problems_cover_every_family():
    """all_problems has one problem per family, and this file checks every family."""
    problems = testing.all_problems()
    families = [p.meta["family"] for p in problems]
    assert sorted(families) == sorted({p.meta["family"] for p in PROBLEMS})
    for problem in problems:
        assert problem.kind in ("continuous", "discrete")
        assert problem.reparameterizable == (problem.kind == "continuous")
