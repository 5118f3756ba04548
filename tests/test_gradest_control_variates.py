"""Control variates against exact gradients and exact variances (gradest.testing).

* Unbiasedness: ``control_variate`` with h(z) = Σ c ⊙ z (E h from the distribution's closed-form
  mean or probabilities) around the score function on every problem of ``testing.all_problems()``,
  and ``delta_method`` around the score function, pathwise and measure-valued estimators on every
  Gaussian problem, have means within 4 standard errors of the exact gradient (fixed seeds,
  20 000 samples, leave-one-out coefficients); where f is quadratic the delta method's estimate
  has zero variance and equals the exact gradient to float32 rounding.
* Exactness of the delta method's expectation: for a quadratic f the expansion is f itself, so
  with β = 1 every per-sample gradient is the exact gradient (to float32 rounding).
* Variance: with a fixed β, the measured per-draw variance matches
  ``testing.exact_delta_method_variance`` (quadrature) within 4 standard errors of the variance
  estimate and 5%.
"""

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



def _first_moment(dist):
    """E z in closed form: probabilities for the discrete problems, the mean otherwise."""
    if gradest.is_discrete(dist):
        return dist.probs
    return dist.mean()


def _linear_control_variate(problem):
    """h(z) = Σ c ⊙ z with fixed c, and E h = Σ c ⊙ E z, differentiable in θ."""
    shape = jnp.shape(_first_moment(problem.make_dist(problem.params)))
    c = jnp.reshape(jnp.linspace(0.5, 1.5, int(np.prod(shape))), shape)

    def h(params, z):
        del params
        return jnp.sum(c * z)

    def expectation_of_h(params):
        return jnp.sum(c * _first_moment(problem.make_dist(params)))

    return h, expectation_of_h


def _assert_unbiased(est, problem, seed):
    exact = testing.exact_grad(problem)
    out = gradest.estimate_grad(est, jax.random.key(seed), problem.params, problem.make_dist,
                                problem.f, 20_000, exact=exact)
    if float(out.diagnostics.total_variance) < 1e-8:
        # A quadratic f under the delta method: h = f, the leave-one-out β is 1 and the estimate
        # is exact up to float32 rounding, where z-scores mean nothing.
        for g, e in zip(jax.tree.leaves(out.grad), jax.tree.leaves(exact)):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
        return
    z = float(out.comparison.max_abs_zscore)
    assert z < 4.0, f"{est.traits.name} on {problem.name}: |z| = {z:.2f}, grad {out.grad}, exact {exact}"


# Gamma, Beta and Student-t samplers and the full-covariance log-density are slow to compile
# (twice here: for f and for h).
_EXPENSIVE = ("gamma", "beta", "student_t", "mvn")


@pytest.mark.parametrize("problem", [
    pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.name.startswith(_EXPENSIVE) else [])
    # The linear control variate needs E z in closed form; a tanh-squashed Gaussian has none.
    for p in testing.all_problems() if p.meta["family"] != "tanh_normal"])
def test_control_variate_around_score_function_is_unbiased(problem):
    h, expectation = _linear_control_variate(problem)
    _assert_unbiased(gradest.control_variate(gradest.score_function(), h, expectation, 8), problem, 1)


_GAUSSIANS = [p for p in testing.all_problems()
              if p.meta["family"] in ("gaussian", "gaussian_direct", "gaussian_diag", "mvn_quadratic")]
_INNER = [("score_function", gradest.score_function), ("pathwise", gradest.pathwise),
          ("measure_valued", gradest.measure_valued)]


@pytest.mark.parametrize("inner", [make for _, make in _INNER], ids=[n for n, _ in _INNER])
@pytest.mark.parametrize("problem", _GAUSSIANS, ids=lambda p: p.name)
def test_delta_method_is_unbiased(problem, inner):
    if inner is gradest.measure_valued and problem.meta["family"] == "mvn_quadratic":
        pytest.skip("no weak derivative of a full-covariance Gaussian here")
    _assert_unbiased(gradest.delta_method(inner(), 8), problem, 2)


@pytest.mark.parametrize("problem", [testing.gaussian("shifted_square", k=2.0),
                                     testing.gaussian_direct(), testing.gaussian_diag(),
                                     testing.mvn_quadratic()], ids=lambda p: p.name)
def test_delta_method_is_exact_for_a_quadratic_f(problem):
    """h = f for a quadratic f, so with β = 1 each sample's gradient is ∇E[h] = ∇E[f], including
    the ½ tr(∇²f Σ) term of a full covariance and f's own dependence on θ."""
    est = gradest.delta_method(gradest.pathwise(), num_samples=1, coefficient=1.0)
    keys = jax.random.split(jax.random.key(0), 64)
    grads, _, _ = gradest.per_sample_grads(est, keys, problem.params, problem.make_dist, problem.f,
                                           est.init())
    exact = testing.exact_grad(problem)
    for g, e in zip(jax.tree.leaves(grads), jax.tree.leaves(exact)):
        np.testing.assert_allclose(g, jnp.broadcast_to(e, g.shape), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("inner", ["score_function", "pathwise"])
@pytest.mark.parametrize("f_name,k,beta", [("exp", 1.0, 1.0), ("cos", 3.0, 0.5)])
def test_fixed_coefficient_variance_matches_quadrature(f_name, k, beta, inner):
    problem = testing.gaussian(f_name, k=k, mu=1.0, sigma=1.0)
    exact_var = testing.exact_delta_method_variance(problem, inner, beta)
    est = gradest.delta_method(getattr(gradest, inner)(), num_samples=1, coefficient=beta)
    assert_variance_matches(est, problem, exact_var, jax.random.key(3), 200_000, num_se=4)


def test_leave_one_out_coefficient_finds_the_optimum_on_a_quadratic():
    """On (x − 2)² the delta expansion is f, β* = 1 and the optimal variance is 0: the
    leave-one-out coefficient gets the per-draw variance far below the plain score function's."""
    problem = testing.gaussian("shifted_square", k=2.0)
    opt = testing.exact_delta_method_variance(problem, "score_function", "optimal")
    plain = testing.exact_variance(problem, "score_function")
    assert max(opt.values()) < 1e-8
    assert testing.exact_delta_method_coefficient(problem, "score_function") == pytest.approx(
        {"mu": 1.0, "sigma": 1.0})
    k = 8
    out = gradest.estimate_grad(gradest.delta_method(gradest.score_function(), k),
                                jax.random.key(4), problem.params, problem.make_dist, problem.f,
                                4_000, diagnostics=True)
    for j in ("mu", "sigma"):
        assert k * float(out.diagnostics.variance[j]) < 1e-6 * plain[j]


def test_rejects_bad_input():
    sf = gradest.score_function()
    h, expectation = _linear_control_variate(testing.gaussian())
    with pytest.raises(gradest.EstimatorError, match="num_samples ≥ 3"):
        gradest.control_variate(sf, h, expectation, num_samples=2)
    with pytest.raises(gradest.EstimatorError, match="finite"):
        gradest.delta_method(sf, coefficient=float("nan"))
    with pytest.raises(gradest.EstimatorError, match="GradientEstimator"):
        gradest.delta_method("score_function")
    with pytest.raises(gradest.EstimatorError, match="callables"):
        gradest.control_variate(sf, h, 1.0)
    with pytest.raises(gradest.EstimatorError, match="discrete"):
        gradest.delta_method(gradest.gumbel_softmax(1.0))
    est = gradest.delta_method(sf)
    problem = testing.gamma()
    with pytest.raises(gradest.EstimatorError, match="Gaussian"):
        est.surrogate(jax.random.key(0), problem.params, problem.make_dist, problem.f, est.init())


def test_estimator_state_reaches_the_inner_estimator():
    """The inner moving-average baseline is updated once per batch with the mean f over all
    S × K draws."""
    est = gradest.control_variate(gradest.score_function(gradest.baselines.moving_average(0.5)),
                                  lambda p, x: x, lambda p: p["mu"], num_samples=4)
    params = {"mu": jnp.array(0.3), "sigma": jnp.array(0.8)}
    out = gradest.estimate_grad(est, jax.random.key(0), params,
                                lambda p: distrax.Normal(p["mu"], p["sigma"]),
                                lambda p, x: jnp.cos(x), 64, with_value=True)
    assert int(out.state.count) == 1
    np.testing.assert_allclose(out.state.biased_mean / 0.5, out.value, rtol=1e-5)
