"""Measure-valued derivatives against exact gradients and exact variances (gradest.testing).

* Unbiasedness: on every problem of ``testing.all_problems()`` with a weak derivative here
  (Normal, MultivariateNormalDiag, TanhNormal, Bernoulli, Categorical; the tanh-Gaussian also
  unsaturated), coupled and uncoupled, the mean of
  20 000 samples lies within 4 standard errors of the exact gradient (fixed seeds; the standard
  error is the estimate's own). One Bernoulli or one categorical variable has an exact,
  zero-variance estimate, checked to float32 rounding; several independent ones (other variables
  at the draw) are checked against enumeration within 4 standard errors.
* Variance: the measured per-sample variance matches ``testing.exact_measure_valued_variance``
  within 4 standard errors of the variance estimate and 5%; the quadrature itself matches closed
  forms for f(x) = x.
"""

import itertools
import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradest
from gradest import testing
from tests.stats import assert_variance_matches

# Behaviour, not speed: small programs compiled once each, where XLA's optimizations cost more
# time than they save.
pytestmark = pytest.mark.usefixtures("fast_compiles")


MVD = [("coupled", True), ("uncoupled", False)]


def _applies(problem):
    return problem.meta["family"] in ("gaussian", "gaussian_direct", "gaussian_diag", "categorical",
                                      "bernoulli", "tanh_normal")


# Every family it knows, and a tanh-Gaussian away from saturation besides the default saturated
# one (tanh(u) rounds to 1 for 9% of its draws).
EXACT_PROBLEMS = {p.name: p for p in testing.all_problems() if _applies(p)}
EXACT_PROBLEMS["tanh_normal_unsaturated"] = testing.tanh_normal(loc=0.3, scale=0.8)


@pytest.mark.parametrize("coupled", [c for _, c in MVD], ids=[n for n, _ in MVD])
@pytest.mark.parametrize("name", list(EXACT_PROBLEMS))
def test_matches_the_exact_gradient(name, coupled):
    problem = EXACT_PROBLEMS[name]
    exact = testing.exact_grad(problem)
    out = gradest.estimate_grad(gradest.measure_valued(coupled), jax.random.key(11), problem.params,
                                problem.make_dist, problem.f, 20_000, exact=exact)
    if problem.kind == "discrete":
        # One variable: the weak derivative is evaluated at every point mass, so it is exact.
        for g, e, v in zip(jax.tree.leaves(out.grad), jax.tree.leaves(exact),
                           jax.tree.leaves(out.diagnostics.variance)):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
            assert float(jnp.max(v)) < 1e-10
    else:
        z = float(out.comparison.max_abs_zscore)
        assert z < 4.0, f"{problem.name}: |z| = {z:.2f}, grad {out.grad}, exact {exact}"


def _enumerated_value(params, make_dist, f, support):
    """E f by enumeration over ``support`` (every joint outcome), an independent reference."""
    dist = make_dist(params)
    total = 0.0
    for z in support:
        total = total + jnp.exp(jnp.sum(dist.log_prob(z))) * f(params, z)
    return total


def _bernoullis():
    w = jnp.array([1.0, -2.0, 0.5])
    def make_dist(p):
        return distrax.Bernoulli(logits=p["logits"], dtype=jnp.float32)
    def f(p, b):
        return (jnp.dot(b, w) - 0.3)**2 + 0.5 * p["logits"][0] * b[1]
    support = [jnp.array(b, jnp.float32) for b in itertools.product([0.0, 1.0], repeat=3)]
    return {"logits": jnp.array([0.3, -0.8, 1.2])}, make_dist, f, support


def _categoricals():
    values = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    def make_dist(p):
        return distrax.Categorical(logits=p["logits"])
    def f(p, y):
        return jnp.cos(values[0, y[0]] * values[1, y[1]]) + jnp.sum(values[1, y])
    support = [jnp.array(y) for y in itertools.product(range(3), repeat=2)]
    return {"logits": jnp.array([[0.2, -0.4, 1.0], [0.5, 0.0, -1.0]])}, make_dist, f, support


@pytest.mark.parametrize("make", [_bernoullis, _categoricals], ids=["bernoulli3", "categorical2x3"])
def test_independent_discrete_variables_match_enumeration(make):
    params, make_dist, f, support = make()
    exact = jax.grad(_enumerated_value)(params, make_dist, f, support)
    # distrax's Bernoulli sampler compares a (1, n) uniform with (n,) probabilities.
    with jax.numpy_rank_promotion("allow"):
        out = gradest.estimate_grad(gradest.measure_valued(), jax.random.key(5), params, make_dist,
                                    f, 20_000, exact=exact, with_value=True)
    assert float(out.comparison.max_abs_zscore) < 4.0, (out.grad, exact)
    # The other variables are drawn, so the estimate varies; it is not enumeration in disguise.
    assert float(out.diagnostics.total_variance) > 1e-3
    value_se = math.sqrt(49.0 / 20_000)  # |f| ≤ 7 on both problems: a bound on the value's se
    assert abs(float(out.value) - float(_enumerated_value(params, make_dist, f, support))) < 4 * value_se


@pytest.mark.parametrize("coupled", [c for _, c in MVD], ids=[n for n, _ in MVD])
@pytest.mark.parametrize("f_name,k", [("shifted_square", 2.0), ("exp", 1.0), ("cos", 5.0)])
def test_per_sample_variance_matches_quadrature(f_name, k, coupled):
    problem = testing.gaussian(f_name, k=k, mu=1.0, sigma=1.0)
    exact_var = testing.exact_measure_valued_variance(problem, coupled)
    assert_variance_matches(gradest.measure_valued(coupled), problem, exact_var,
                            jax.random.key(int(k) + 10 * coupled), 200_000, num_se=4)


def test_quadrature_matches_closed_forms_for_a_linear_f():
    """f(x) = x: g_μ = c σ (W + W′), c = 1/(σ√(2π)), with Var W = 2 − π/2 (Rayleigh), so
    Var g_μ = 4/π − 1 coupled (W′ = W) and 2/π − 1/2 uncoupled; g_σ = M − N with E M² = 3, so
    Var g_σ = E M² (1 − U)² = 1 coupled (N = MU) and 3 + 1 = 4 uncoupled."""
    problem = testing.gaussian("linear", k=1.0, mu=0.7, sigma=1.3)
    coupled = testing.exact_measure_valued_variance(problem, coupled=True)
    uncoupled = testing.exact_measure_valued_variance(problem, coupled=False)
    np.testing.assert_allclose([coupled["mu"], coupled["sigma"]], [4 / math.pi - 1, 1.0], rtol=1e-8)
    np.testing.assert_allclose([uncoupled["mu"], uncoupled["sigma"]], [2 / math.pi - 0.5, 4.0],
                               rtol=1e-8)


def test_quadrature_converges():
    """The half-line rule with its end correction agrees between 4001 and 8001 nodes to 1e-7."""
    problem = testing.gaussian("cos", k=5.0)
    for coupled in (True, False):
        a = testing.exact_measure_valued_variance(problem, coupled, num_nodes=4001)
        b = testing.exact_measure_valued_variance(problem, coupled)
        for j in ("mu", "sigma"):
            assert abs(a[j] / b[j] - 1) < 1e-7, (coupled, j, a[j], b[j])


def test_rejects_bad_input():
    with pytest.raises(gradest.EstimatorError, match="bool"):
        gradest.measure_valued(coupled="yes")
    est = gradest.measure_valued()
    problem = testing.gamma()
    with pytest.raises(gradest.EstimatorError, match="weak derivative"):
        est.surrogate(jax.random.key(0), problem.params, problem.make_dist, problem.f, est.init())
