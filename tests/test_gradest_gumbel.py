"""Gumbel-Max, Gumbel-Softmax and straight-through (seed 001).

Statistical tests use fixed seeds; tolerances come from the standard errors of the estimates
(or from a χ² test's p-value), as each docstring says.
"""

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import gradest

LOGITS = jnp.array([0.5, -0.2, 0.1, -1.0, 0.3])
VALUES = jnp.array([1.0, -1.0, 2.0, 0.5, -0.5])
PARAMS = {"logits": LOGITS}


def make_dist(p):
    return distrax.OneHotCategorical(logits=p["logits"], dtype=jnp.float32)


def f(p, y):
    del p
    return (jnp.dot(y, VALUES) - 0.3) ** 2


def exact_grad():
    """∇ Σ_k softmax(logits)_k f(e_k), by enumeration."""
    fk = jax.vmap(lambda y: f(None, y))(jnp.eye(LOGITS.size))
    return jax.grad(lambda p: jnp.sum(jax.nn.softmax(p["logits"]) * fk))(PARAMS)


def test_gumbel_max_frequencies_match_softmax():
    """χ² goodness of fit of 200k Gumbel-Max draws to softmax(logits) (seed 001's proof):
    with a fixed seed the p-value must exceed 1e-3."""
    n = 200_000
    idx = jax.jit(jax.vmap(gradest.gumbel_max_sample, in_axes=(0, None)))(
        jax.random.split(jax.random.key(0), n), LOGITS)
    counts = np.bincount(np.asarray(idx), minlength=LOGITS.size)
    probs = np.exp(np.asarray(LOGITS, np.float64))
    expected = n * probs / probs.sum()
    _, p_value = stats.chisquare(counts, expected)
    assert p_value > 1e-3, (counts, expected, p_value)


def test_straight_through_forward_is_exactly_the_gumbel_max_one_hot():
    keys = jax.random.split(jax.random.key(1), 500)
    y = jax.vmap(lambda k: gradest.gumbel_softmax_sample(k, LOGITS, 0.7, hard=True))(keys)
    idx = jax.vmap(lambda k: gradest.gumbel_max_sample(k, LOGITS))(keys)
    np.testing.assert_array_equal(np.asarray(y), np.eye(LOGITS.size)[np.asarray(idx)])


def test_straight_through_backward_is_the_relaxed_gradient():
    key = jax.random.key(2)
    soft = jax.grad(lambda lg: jnp.dot(gradest.gumbel_softmax_sample(key, lg, 0.5), VALUES))(LOGITS)
    hard = jax.grad(lambda lg: jnp.dot(gradest.gumbel_softmax_sample(key, lg, 0.5, hard=True),
                                       VALUES))(LOGITS)
    chex.assert_trees_all_close(soft, hard, rtol=1e-6)


def test_relaxed_sample_lies_on_the_simplex_and_hardens_as_tau_falls():
    keys = jax.random.split(jax.random.key(3), 2000)
    max_prob = []
    for tau in [5.0, 1.0, 0.1]:
        y = jax.vmap(lambda k: gradest.gumbel_softmax_sample(k, LOGITS, tau))(keys)
        chex.assert_trees_all_close(y.sum(-1), jnp.ones(2000), atol=1e-5)
        assert float(y.min()) >= 0.0
        max_prob.append(float(y.max(-1).mean()))
    assert max_prob[0] < max_prob[1] < max_prob[2]


@pytest.mark.parametrize("hard", [False, True], ids=["gumbel_softmax", "straight_through"])
def test_bias_shrinks_and_variance_grows_as_tau_falls(hard):
    """On a fixed categorical problem the relative bias ‖E ĝ − g*‖/‖g*‖ falls as τ falls, each
    step by more than 5 standard errors of the difference, while the per-sample variance rises
    (the bias-variance trade of seed 001). 50k samples per τ, fixed seed."""
    exact = exact_grad()
    exact_norm = float(jnp.linalg.norm(exact["logits"]))
    n = 50_000
    biases, ses, variances = [], [], []
    for tau in [2.0, 1.0, 0.5, 0.25]:
        out = gradest.estimate_grad(gradest.gumbel_softmax(tau, hard), jax.random.key(4), PARAMS,
                                    make_dist, f, n, exact=exact)
        biases.append(float(out.comparison.relative_error))
        ses.append(float(jnp.sqrt(out.diagnostics.total_variance / n)) / exact_norm)
        variances.append(float(out.diagnostics.total_variance))
    for i in range(3):
        assert biases[i] - biases[i + 1] > 5 * np.hypot(ses[i], ses[i + 1]), (biases, ses)
        assert variances[i] < variances[i + 1]


def test_score_function_is_unbiased_where_gumbel_softmax_is_not():
    """At τ = 1 the Gumbel-Softmax mean lies > 10 standard errors from the exact gradient while
    the score function (leave-one-out baseline) lies within 5 (50k samples, fixed seed)."""
    exact = exact_grad()
    sf = gradest.estimate_grad(gradest.score_function(gradest.baselines.leave_one_out(2)),
                               jax.random.key(5), PARAMS, make_dist, f, 50_000, exact=exact)
    gs = gradest.estimate_grad(gradest.gumbel_softmax(1.0), jax.random.key(5), PARAMS, make_dist,
                               f, 50_000, exact=exact)
    assert float(sf.comparison.max_abs_zscore) < 5.0
    assert float(gs.comparison.max_abs_zscore) > 10.0


def test_binary_concrete_relaxes_a_bernoulli():
    """Hard binary-Concrete draws are Bernoulli(σ(logit)): mean within 5 standard errors."""
    logit = 0.4
    keys = jax.random.split(jax.random.key(6), 100_000)
    y = jax.vmap(lambda k: gradest.gumbel.binary_concrete_sample(k, jnp.array(logit), 0.5, True))(keys)
    p = float(jax.nn.sigmoid(logit))
    assert abs(float(y.mean()) - p) < 5 * np.sqrt(p * (1 - p) / y.size)
    est = gradest.gumbel_softmax(0.5)
    value, _ = est.surrogate(jax.random.key(7), {"l": jnp.array(logit)},
                             lambda q: distrax.Bernoulli(logits=q["l"], dtype=jnp.float32),
                             lambda q, z: z, est.init())
    assert 0.0 < float(value) < 1.0


def test_exponential_anneal_schedule():
    sched = gradest.exponential_anneal(init=1.0, rate=0.01, floor=0.5)
    chex.assert_trees_all_close(sched(0), 1.0)
    chex.assert_trees_all_close(sched(10), np.exp(-0.1), rtol=1e-6)
    chex.assert_trees_all_close(sched(10_000), 0.5)
    est = gradest.gumbel_softmax(sched)
    state = est.update(est.update(est.init(), {}), {})
    _, aux = est.surrogate(jax.random.key(0), PARAMS, make_dist, f, state)
    chex.assert_trees_all_close(aux["temperature"], np.exp(-0.02), rtol=1e-6)
