"""Tests of gradest.distributions against scipy and independent closed forms.

Statistical tests use fixed seeds and a tolerance of 5 standard errors computed from the same
samples. Helpers are jitted with fixed shapes, so each compiles once for the whole file (eager
op-by-op dispatch compiles every primitive separately and dominated the run time); construction
with concrete values, where the checks run, is tested eagerly at the end.
"""

import functools
import math

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from gradest import testing
from gradest._core import EstimatorError
from gradest.distributions import Bernoulli, StudentT, TanhNormal

NUM = 50_000


def _mean_and_stderr(x):
    x = np.asarray(x, np.float64)
    return x.mean(axis=0), x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])


# --------------------------------------------------------------------------------------------
# StudentT


@jax.jit
def _student_t_summary(df, loc, scale, x):
    dist = StudentT(df, loc, scale)
    return dist.log_prob(x), dist.mean(), dist.variance(), dist.mode()


@pytest.mark.parametrize("df", [0.5, 1.0, 2.0, 3.0, 30.0])
def test_student_t_log_prob_and_moments_match_scipy(df):
    loc, scale = 0.3, np.array([0.5, 2.0], np.float32)
    dist = StudentT(df, loc, scale)
    assert dist.batch_shape == (2,) and dist.event_shape == ()
    x = np.linspace(-10.0, 10.0, 41, dtype=np.float32)[:, None]
    log_prob, mean, variance, mode = _student_t_summary(df, loc, scale, x)
    np.testing.assert_allclose(log_prob, scipy.stats.t.logpdf(x, df, loc, scale),
                               rtol=1e-5, atol=1e-5)
    reference = scipy.stats.t(df, loc, scale)
    # scipy reports an undefined mean (df ≤ 1) as inf; ours is NaN, as in TFP.
    np.testing.assert_allclose(mean, reference.mean() if df > 1 else np.full(2, np.nan),
                               rtol=1e-6)
    np.testing.assert_allclose(variance, reference.var(), rtol=1e-5)
    np.testing.assert_array_equal(mode, jnp.full(2, loc, jnp.float32))


@jax.jit
def _draws_and_tangents(params, key):
    """NUM draws x_i and, per parameter θ_j, every dx_i/dθ_j (forward mode: draw i depends on θ
    alone)."""
    def draws(p):
        return StudentT(p["df"], p["loc"], p["scale"]).sample(seed=key, sample_shape=NUM)

    tangents = {}
    for name in params:
        basis = {k: jnp.float32(k == name) for k in params}
        x, tangents[name] = jax.jvp(draws, (params,), (basis,))
    return x, tangents


def _params(df):
    return {"df": jnp.float32(df), "loc": jnp.float32(0.5), "scale": jnp.float32(1.2)}


def test_student_t_samples_follow_scipy_cdf():
    """Kolmogorov–Smirnov against scipy's t CDF: p-value above 1e-3 (fixed seed)."""
    x, _ = _draws_and_tangents(_params(3.0), jax.random.key(0))
    chex.assert_shape(x, (NUM,))
    pvalue = scipy.stats.kstest(np.asarray(x, np.float64), "t", args=(3.0, 0.5, 1.2)).pvalue
    assert pvalue > 1e-3


@pytest.mark.parametrize("df", [0.5, 3.0, 10.0])
def test_student_t_pathwise_gradients(df):
    """Samples are differentiable in df, loc and scale with finite gradients, even for df < 1;
    where the per-sample gradient has finite variance (df > 4) the pathwise estimate of
    ∇ E[x²] = ∇ (loc² + scale² df/(df − 2)), the mean of 2 x_i dx_i/dθ, is within 5 standard
    errors of the exact one."""
    x, tangents = _draws_and_tangents(_params(df), jax.random.key(1))
    chex.assert_tree_all_finite(tangents)
    if df > 4:
        exact = testing.exact_grad(testing.student_t(df=df, loc=0.5, scale=1.2))
        for name, dx in tangents.items():
            mean, stderr = _mean_and_stderr(2.0 * x * dx)
            assert abs(mean - float(exact[name])) <= 5 * stderr, (name, mean, exact[name], stderr)


# --------------------------------------------------------------------------------------------
# TanhNormal


def _reference_log_prob(a, loc, scale):
    """log π(a) by the change of variables in float64: Σ_d log N(atanh a_d) − log(1 − a_d²)."""
    a = np.asarray(a, np.float64)
    u = np.arctanh(a)
    return np.sum(scipy.stats.norm.logpdf(u, loc, scale) - np.log1p(-a**2), axis=-1)


@functools.partial(jax.jit, static_argnames="num")
def _tanh_draws(key, loc, scale, num):
    return TanhNormal(loc, scale).sample_and_log_prob(seed=key, sample_shape=num)


@jax.jit
def _tanh_log_prob(loc, scale, a):
    return TanhNormal(loc, scale).log_prob(a)


def test_tanh_normal_log_prob_matches_change_of_variables():
    """Against scipy and against distrax.Transformed(MultivariateNormalDiag, Block(Tanh(), 1))."""
    loc = np.array([[0.2, -1.0, 2.0], [0.0, 0.5, -0.3]], np.float32)
    scale = np.array([0.7, 1.3, 0.4], np.float32)
    a, _ = _tanh_draws(jax.random.key(2), loc, scale, 200)
    a = jnp.clip(a, -0.999, 0.999)
    log_prob = _tanh_log_prob(loc, scale, a)
    np.testing.assert_allclose(log_prob, _reference_log_prob(a, loc, scale), rtol=1e-5, atol=1e-4)

    # One draw at a time: distrax broadcasts a sample axis against loc implicitly, which the
    # suite's rank-promotion setting refuses.
    @jax.jit
    @jax.vmap
    def via_distrax(a):
        gaussian = distrax.MultivariateNormalDiag(loc, jnp.broadcast_to(scale, loc.shape))
        return distrax.Transformed(gaussian, distrax.Block(distrax.Tanh(), 1)).log_prob(a)

    np.testing.assert_allclose(log_prob, via_distrax(a), rtol=1e-4, atol=1e-3)


def test_tanh_normal_log_prob_finite_at_the_boundary():
    """Actions at ±(1 − 1e-6) get the exact change-of-variables density; actions at ±1 are clipped
    to the largest float below 1 and still get a finite log-prob and finite gradients."""
    loc, scale = jnp.array([0.5, -0.5]), jnp.array([1.0, 2.0])
    near = jnp.array([[1.0 - 1e-6, -(1.0 - 1e-6)], [-(1.0 - 1e-6), 1.0 - 1e-6]], jnp.float32)
    np.testing.assert_allclose(_tanh_log_prob(loc, scale, near),
                               _reference_log_prob(near, loc, scale), rtol=1e-4)
    edge = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    chex.assert_tree_all_finite(_tanh_log_prob(loc, scale, edge))
    grads = jax.jit(jax.grad(lambda lc, sc: jnp.sum(_tanh_log_prob(lc, sc, edge)), (0, 1)))(
        loc, scale)
    chex.assert_tree_all_finite(grads)


def test_tanh_normal_sample_and_log_prob_stable_when_saturated():
    """With |u| ≈ 20, tanh(u) rounds to ±1 in float32, yet sample_and_log_prob's log-prob (from
    the pre-tanh u) is finite and averages to its exact mean: per dimension,
    E[log N(u)] = −½ − log σ − ½ log 2π and E[−log(1 − tanh² u)] = 2 E|u| − 2 log 2 + O(e^{−2|u|})
    with E|u| = |loc| (u never crosses 0 here); within 5 standard errors."""
    loc, scale = jnp.array([20.0, -20.0]), jnp.array([0.5, 2.0])
    a, log_prob = _tanh_draws(jax.random.key(3), loc, scale, NUM)
    np.testing.assert_array_equal(jnp.abs(a), 1.0)
    chex.assert_tree_all_finite(log_prob)
    expected = np.sum(-0.5 - np.log(scale) - 0.5 * math.log(2 * math.pi)
                      + 2 * np.abs(loc) - 2 * math.log(2.0))
    mean, stderr = _mean_and_stderr(log_prob)
    assert abs(mean - expected) <= 5 * stderr, (mean, expected, stderr)


def test_tanh_normal_sample_and_log_prob_agree_with_log_prob():
    """Where the action is not saturated, sample_and_log_prob's log-prob equals log_prob(a)."""
    loc = jnp.array([[0.3, -0.8, 1.5], [0.0, 2.0, -0.2], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.4]])
    scale = jnp.array([0.5, 1.0, 0.3])
    dist = TanhNormal(loc, scale)
    assert dist.batch_shape == (4,) and dist.event_shape == (3,)
    np.testing.assert_allclose(dist.mode(), jnp.tanh(loc))
    a, log_prob = _tanh_draws(jax.random.key(4), loc, scale, 500)
    chex.assert_shape([a, log_prob], [(500, 4, 3), (500, 4)])
    interior = np.all(np.abs(np.asarray(a)) < 0.99, axis=-1)
    assert interior.mean() > 0.5
    np.testing.assert_allclose(np.asarray(log_prob)[interior],
                               np.asarray(_tanh_log_prob(loc, scale, a))[interior],
                               rtol=1e-4, atol=1e-4)


def test_tanh_normal_is_reparameterized():
    """Pathwise per-sample gradients of Σ_d a_d: the loc one, 1 − tanh²(u), averages to
    E[1 − tanh²(u)], u ~ N(loc, σ²), by float64 quadrature; within 5 standard errors."""
    loc, scale = jnp.array([0.3, -1.2]), jnp.array([0.8, 0.5])
    key = jax.random.key(5)

    @jax.jit
    def per_sample_grads(loc):
        def draws(lc):
            return TanhNormal(lc, scale).sample(seed=key, sample_shape=NUM)

        # Dimensions are independent, so the JVP along all-ones holds each draw's per-dim
        # derivative d a_{i,d} / d loc_d.
        return jax.jvp(draws, (loc,), (jnp.ones_like(loc),))[1]

    per_sample = per_sample_grads(loc)
    eps = np.linspace(-20.0, 20.0, 8001)
    weights = (eps[1] - eps[0]) * np.exp(-0.5 * eps**2) / math.sqrt(2 * math.pi)
    for d in range(2):
        u = float(loc[d]) + float(scale[d]) * eps
        exact = np.dot(weights, 1.0 - np.tanh(u)**2)
        mean, stderr = _mean_and_stderr(per_sample[:, d])
        assert abs(mean - exact) <= 5 * stderr, (d, mean, exact, stderr)


def test_jit_and_vmap():
    """Built inside jit and vmap (parameters traced), sampling and log-probs match eager ones."""
    key = jax.random.key(6)
    locs = jnp.array([[0.1, -0.2], [0.5, 0.9]])

    @jax.jit
    def tanh_normal(key, loc):
        return TanhNormal(loc, 0.7).sample_and_log_prob(seed=key)

    a, log_prob = jax.vmap(tanh_normal, (None, 0))(key, locs)
    for i in range(2):
        a_i, lp_i = TanhNormal(locs[i], 0.7).sample_and_log_prob(seed=key)
        np.testing.assert_allclose(a[i], a_i, rtol=1e-6)
        np.testing.assert_allclose(log_prob[i], lp_i, rtol=1e-5)
    student = jax.jit(jax.vmap(lambda df, x: StudentT(df, 0.0, 1.0).log_prob(x)))
    np.testing.assert_allclose(student(jnp.array([1.0, 4.0]), jnp.array([0.5, -2.0])),
                               scipy.stats.t.logpdf([0.5, -2.0], [1.0, 4.0]), rtol=1e-5)


@pytest.mark.parametrize("build,match", [
    (lambda: StudentT(0.0, 0.0, 1.0), "df"),
    (lambda: StudentT(-2.0, 0.0, 1.0), "df"),
    (lambda: StudentT(np.inf, 0.0, 1.0), "df"),
    (lambda: StudentT(3.0, 0.0, 0.0), "scale"),
    (lambda: StudentT(3.0, 0.0, np.array([1.0, -1.0])), "scale"),
    (lambda: StudentT(3.0, 0.0, np.nan), "scale"),
    (lambda: StudentT(3.0, np.inf, 1.0), "loc"),
    (lambda: TanhNormal(jnp.zeros(2), jnp.array([1.0, 0.0])), "scale"),
    (lambda: TanhNormal(jnp.zeros(2), jnp.array([1.0, jnp.inf])), "scale"),
    (lambda: TanhNormal(jnp.array([0.0, jnp.nan]), 1.0), "loc"),
    (lambda: TanhNormal(0.0, 1.0), "axis"),
])
def test_bad_inputs_raise(build, match):
    with pytest.raises(EstimatorError, match=match):
        build()


def test_traced_inputs_are_not_checked():
    """Inside jit a value cannot be inspected: a bad scale gives NaN, not an error."""
    log_prob = jax.jit(lambda s: StudentT(3.0, 0.0, s).log_prob(0.0))(-1.0)
    assert np.isnan(log_prob)


def test_bernoulli_samples_equal_distraxs_and_respect_rank_promotion():
    """gradest.Bernoulli draws exactly distrax's samples for the same key, and does so under
    jax_numpy_rank_promotion="raise" for a batch of variables (where distrax's sampler raises)."""
    logits = jnp.array([[0.3, -1.0, 2.0], [0.0, 1.5, -0.5]])
    key = jax.random.key(0)
    ours = Bernoulli(logits=logits, dtype=jnp.float32)
    with jax.numpy_rank_promotion("allow"):
        expected = distrax.Bernoulli(logits=logits, dtype=jnp.float32).sample(
            seed=key, sample_shape=5)
    with jax.numpy_rank_promotion("raise"):
        got = ours.sample(seed=key, sample_shape=5)
        one = ours.sample(seed=key)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == jnp.float32 and one.shape == (2, 3)
    assert isinstance(ours, distrax.Bernoulli)
