"""Estimators at the edge of the support: finite and unbiased where float32 draws round onto it.

A Beta draw with b < 1 rounds to exactly 1.0 (with b = 0.05, four draws in ten do), a Gamma draw
with a small shape underflows to 0, tanh(u) rounds to ±1 once u ≳ 9, and a Student-t draw with a
small df runs past the float range. There log q of the rounded sample is ±inf (the score
function's magic box then forms inf − inf) or silently wrong (a clipped tanh).

* Forced boundary draws: the score function is handed a draw whose latent form puts the sample
  exactly on the boundary (a wrapper's ``sample_with_latent`` returns it), whatever the sampler
  or the compiler would have drawn; its per-sample gradient must equal f(z) ∇log q from the
  closed-form score in float64 (digamma from scipy), not merely be finite.
* Sampled boundary draws: from a fixed key set, the draws that lie on the boundary or within one
  float32 step of it (z == 1.0, z == 0, |a| ≥ 1 − 2⁻²³, |x| ≥ 10²⁰) are picked out, and their
  per-sample gradients must be finite. (One step, not exactly on it: whether tanh(u) rounds to
  exactly ±1 depends on XLA's tanh, which differs between optimization levels.)
* Unbiasedness: on problems where such draws are frequent, the mean per-sample gradient lies
  within 4 standard errors (its own, sqrt(per-sample variance / S)) of the exact gradient from
  ``gradest.testing`` (closed forms; quadrature for the tanh-Gaussian), fixed seeds. Clamping the
  boundary draws into the open support instead fails these checks by tens of standard errors
  (measured: 630 and 4.5 standard errors on the Beta and Gamma problems below).
"""

import functools

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradest
from gradest import baselines, testing

pytestmark = pytest.mark.usefixtures("fast_compiles")

ESTIMATORS = {
    "score_function": gradest.score_function,
    "score_function+loo": lambda: gradest.score_function(baselines.leave_one_out(4)),
    "score_function+optimal": lambda: gradest.score_function(baselines.optimal(4, True)),
    "pathwise": gradest.pathwise,
}

# (problem, which draws lie on the boundary) with boundary draws in at least ~1% of samples.
EDGE_PROBLEMS = {
    "beta_b_small": (testing.beta(a=2.5, b=0.05, f_name="square"), lambda z: z == 1.0),
    "beta_a_small": (testing.beta(a=0.02, b=2.0, f_name="square"), lambda z: z == 0.0),
    "gamma_small_shape": (testing.gamma(concentration=0.05, rate=1.0, f_name="exp_neg"),
                          lambda z: z == 0.0),
    "student_t_small_df": (testing.student_t(df=0.1, loc=0.5, scale=1.2, f_name="ratio"),
                           lambda z: jnp.abs(z) >= 1e20),
    "tanh_saturated": (testing.tanh_normal(loc=6.0, scale=2.0),
                       lambda a: jnp.abs(a[..., 0]) >= 1.0 - 2.0**-23),
}


@functools.partial(jax.jit, static_argnums=(2, 3))
def _draws(key, params, make_dist, n):
    # The draws behind n per-sample gradients of a one-draw estimator: by dist.sample (pathwise)
    # and by sample_with_latent (the score function's exact draw), from the same keys.
    dist = make_dist(params)
    keys = jax.random.split(key, n)
    return (jax.vmap(lambda k: dist.sample(seed=k))(keys),
            jax.vmap(lambda k: gradest.distributions.sample_with_latent(dist, k)[0])(keys))


_per_sample_grads = jax.jit(gradest.per_sample_grads, static_argnums=(0, 3, 4))


def _cases():
    for name in EDGE_PROBLEMS:
        for est_name in ESTIMATORS:
            # The score function on every problem in the fast suite (the samplers take seconds to
            # compile); pathwise and the baselines in the slow one.
            slow = est_name != "score_function"
            yield pytest.param(name, est_name, id=f"{name}-{est_name}",
                               marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("name,est_name", list(_cases()))
def test_finite_on_boundary_draws_and_unbiased(name, est_name):
    """100k per-sample gradients (fixed seed) are all finite, including those of the ≥ 20 draws
    that lie exactly on the boundary (one-draw estimators: those draws are picked out and checked
    by name), and their mean lies within 4 standard errors (+ 1e-6) of the exact gradient."""
    problem, on_boundary = EDGE_PROBLEMS[name]
    n = 100_000
    key = jax.random.key(7)
    est = ESTIMATORS[est_name]()
    grads, values, _ = _per_sample_grads(est, jax.random.split(key, n), problem.params,
                                         problem.make_dist, problem.f, est.init())
    grads = {j: np.asarray(g, np.float64).reshape(n, -1) for j, g in grads.items()}
    if est.traits.samples_per_call == 1:
        sampled, drawn = _draws(key, problem.params, problem.make_dist, n)
        # sample_with_latent draws what dist.sample draws (the same sampler on the same key).
        np.testing.assert_allclose(np.asarray(sampled), np.asarray(drawn), rtol=1e-5, atol=1e-30)
        mask = np.asarray(on_boundary(drawn)).reshape(n)
        assert mask.sum() >= 20, f"{name}: only {mask.sum()} boundary draws"
        assert np.all(np.isfinite(np.asarray(values)[mask]))
        for j, g in grads.items():
            assert np.all(np.isfinite(g[mask])), (name, est_name, j)
    exact = testing.exact_grad(problem)
    for j, g in grads.items():
        assert np.all(np.isfinite(g)), (name, est_name, j)
        mean, se = g.mean(axis=0), g.std(axis=0, ddof=1) / np.sqrt(n)
        e = np.asarray(exact[j], np.float64).reshape(-1)
        # + 1e-6, float32 resolution: where the exact gradient is 0 and every sample's is 0 up
        # to rounding (pathwise ∂μ, ∂σ of the standardized Student-t ratio), se is ~0 too.
        assert np.all(np.abs(mean - e) <= 4.0 * se + 1e-6), (name, est_name, j, mean, e, se)


@pytest.mark.parametrize("problem", [
    testing.categorical(logits=[8.0, -30.0, 0.0, 0.0]),
    testing.bernoulli(logit=-9.0),
    testing.gaussian("linear", k=1.0, mu=0.0, sigma=1e-3),
], ids=["categorical_extreme_logits", "bernoulli_extreme_logit", "normal_tiny_scale"])
def test_other_families_stay_finite_and_unbiased_at_extreme_parameters(problem):
    """Classes of probability 3e-4 and e^-38, a Bernoulli of probability 1e-4, a Normal of scale
    1e-3: every per-sample gradient is finite (distrax's log-softmax forms) and the mean lies
    within 4 standard errors of the exact gradient plus 1e-6 (a class never drawn leaves a
    coordinate at exactly 0 with zero standard error, while its exact gradient is ~1e-17)."""
    exact = testing.exact_grad(problem)
    out = gradest.estimate_grad(gradest.score_function(baselines.leave_one_out(4)),
                                jax.random.key(3), problem.params, problem.make_dist, problem.f,
                                20_000, exact=exact)
    for j, g in out.grad.items():
        assert np.all(np.isfinite(np.asarray(out.diagnostics.variance[j]))), (problem.name, j)
        bias = np.abs(np.asarray(g) - np.asarray(exact[j]))
        assert np.all(bias <= 4.0 * np.asarray(out.diagnostics.stderr[j]) + 1e-6), (
            problem.name, j, g, exact[j])


class _ForcedDraw:
    """A distribution whose every draw is one given latent (``sample_with_latent`` ignores the
    key); its log-density is the wrapped distribution's, through ``log_prob_from_latent``."""

    def __init__(self, dist, latent, sample):
        self._dist, self._latent, self._sample = dist, latent, sample

    def sample_with_latent(self, seed):
        del seed
        return self._sample(self._latent), self._latent

    def log_prob_from_latent(self, latent):
        return gradest.distributions.log_prob_from_latent(self._dist, latent)


def _student_t_score(df, scale, log_abs_t):
    """∂(ν, μ, σ) of log p at a draw |z| = |t| = e^(log|t|) ≫ 1 (σ₀ = σ, μ₀ = μ), where
    log(1 + z²/ν) = 2 log|z| − log ν to float64 precision: ∂μ = 0, ∂σ = ν/σ,
    ∂ν = ½ψ((ν+1)/2) − ½ψ(ν/2) − 1/(2ν) − ½(2 log|z| − log ν) + (ν+1)/(2ν)."""
    from scipy.special import digamma
    d_df = (0.5 * digamma(0.5 * (df + 1)) - 0.5 * digamma(0.5 * df) - 0.5 / df
            - 0.5 * (2 * log_abs_t - np.log(df)) + 0.5 * (df + 1) / df)
    return {"df": d_df, "loc": 0.0, "scale": df / scale}


def _forced_cases():
    """(name, params, make_dist, latent, sample from latent, f, on_boundary, float64 score)."""
    from scipy.special import digamma

    def beta_score(a, b, log_x, log1m_x):
        return {"a": log_x - digamma(a) + digamma(a + b), "b": log1m_x - digamma(b) + digamma(a + b)}

    beta_sample = lambda lat: jnp.exp(lat[0])  # noqa: E731
    yield ("beta_at_1", {"a": 2.5, "b": 0.05}, lambda p: distrax.Beta(p["a"], p["b"]),
           (jnp.float32(0.0), jnp.float32(-150.0)), beta_sample, lambda z: z == 1.0,
           beta_score(2.5, 0.05, 0.0, -150.0))
    yield ("beta_at_0", {"a": 0.02, "b": 2.0}, lambda p: distrax.Beta(p["a"], p["b"]),
           (jnp.float32(-150.0), jnp.float32(0.0)), beta_sample, lambda z: z == 0.0,
           beta_score(0.02, 2.0, -150.0, 0.0))
    yield ("gamma_at_0", {"concentration": 0.05, "rate": 1.0},
           lambda p: distrax.Gamma(p["concentration"], p["rate"]), jnp.float32(-200.0), jnp.exp,
           lambda z: z == 0.0,
           {"concentration": -200.0 - digamma(0.05), "rate": 0.05 / 1.0 - np.exp(-200.0)})
    # a = ±1 exactly: tanh(u) correctly rounded to float32 for |u| > 9.01 (XLA's tanh may land
    # a few steps short of 1, depending on the optimization level).
    for u in (12.0, -30.0):
        yield (f"tanh_at_{u:+.0f}", {"loc": jnp.array([6.0]), "scale": jnp.array([2.0])},
               lambda p: gradest.TanhNormal(p["loc"], p["scale"]), jnp.array([u]), jnp.sign,
               lambda a: jnp.abs(a[0]) == 1.0,
               {"loc": (u - 6.0) / 4.0, "scale": (u - 6.0) ** 2 / 8.0 - 0.5})
    # |t| = 1.5 e^80 is past the float range: x is capped at 10²⁷σ, log q is formed from log|t|.
    yield ("student_t_past_float_range", {"df": 0.1, "loc": 0.5, "scale": 1.2},
           lambda p: gradest.StudentT(p["df"], p["loc"], p["scale"]),
           (jnp.float32(1.5), jnp.float32(80.0)),
           lambda lat: 0.5 + 1.2 * lat[0] * jnp.exp(jnp.minimum(lat[1], 64.0)),
           lambda x: jnp.abs(x) >= 1e20, _student_t_score(0.1, 1.2, np.log(1.5) + 80.0))


@pytest.mark.parametrize("case", list(_forced_cases()), ids=lambda c: c[0])
def test_score_function_exact_on_a_forced_boundary_draw(case):
    """A draw forced onto the boundary (Beta at 1 and at 0, Gamma at 0, tanh at ±1, Student-t
    past the float range): the score function's per-sample gradient is f(z) ∇log q(z) with the
    score from its closed form in float64, to float32 precision (rtol 1e-4), with no inf or NaN.
    Without the latent form, log q(z) is ±inf here and the magic box gives inf − inf."""
    name, params, make_dist, latent, sample, on_boundary, score = case
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    z = sample(latent)
    assert bool(on_boundary(z)), (name, z)
    # Bounded and ≠ 0 at every boundary (1.5 at 0, 1 at ±1, 0.5 past the float range).
    f = lambda p, x: jnp.sum(0.5 + 1.0 / (1.0 + x * x))  # noqa: E731
    fz = 0.5 + 1.0 / (1.0 + np.asarray(z, np.float64) ** 2)
    make_forced = lambda p: _ForcedDraw(make_dist(p), latent, sample)  # noqa: E731
    grads, values, _ = gradest.per_sample_grads(gradest.score_function(), jax.random.split(
        jax.random.key(0), 1), params, make_forced, f, None)
    assert np.isfinite(np.asarray(values)).all(), name
    for j, g in grads.items():
        expected = np.sum(fz) * np.asarray(score[j], np.float64)
        np.testing.assert_allclose(np.asarray(g, np.float64).reshape(-1),
                                   np.reshape(expected, -1), rtol=1e-4, atol=1e-6,
                                   err_msg=f"{name} ∂{j}")
