"""The conformance suite every estimator passes (DESIGN.md §3, optax-style).

For each estimator on a problem it applies to: the surrogate is a scalar; its value is f at the
sample the estimator drew; jit equals no-jit; one trace per input shape; gradients are finite;
the same key gives the same result; ``estimate_grad`` is the mean of the per-sample surrogate
gradients over split keys, written out as a loop; and an incompatible distribution raises at
trace time. (That each estimator's mean is the right gradient is test_gradest_exact's job.)
"""

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradest
from gradest import baselines
from gradest.unordered_set import set_weights

# Behaviour, not speed: each case compiles small programs once, where XLA's optimizations cost
# more time than they save.
pytestmark = pytest.mark.usefixtures("fast_compiles")

KEY = jax.random.key(0)

GAUSS_PARAMS = {"mu": jnp.array([0.5, -1.0]), "sigma": jnp.array([1.0, 0.7])}
CAT_PARAMS = {"logits": jnp.array([0.2, -0.4, 1.0, 0.0])}
CAT_VALUES = jnp.array([1.0, -2.0, 0.5, 3.0])


def gauss_dist(p):
    return distrax.Normal(p["mu"], p["sigma"])


def gauss_f(p, x):
    # Depends on θ directly too, to exercise the ∇θ f term.
    return jnp.sum(jnp.cos(2.0 * x) + 0.1 * p["mu"] * x)


def cat_dist(p):
    return distrax.OneHotCategorical(logits=p["logits"], dtype=jnp.float32)


def cat_f(p, y):
    del p
    return jnp.dot(y, CAT_VALUES) ** 2


BERN_PARAMS = {"logits": jnp.array([0.3, -0.5, 1.0])}
BERN_WEIGHTS = jnp.array([1.0, -2.0, 0.5])


def bern_dist(p):
    return distrax.Bernoulli(logits=p["logits"], dtype=jnp.float32)


def bern_f(p, b):
    # Depends on θ directly too, to exercise the ∇θ f term.
    return (jnp.dot(b, BERN_WEIGHTS) - 0.5) ** 2 + 0.1 * jnp.dot(p["logits"], b)


def _antithetic_pair(dist, key):
    u = jax.random.uniform(key, dist.logits.shape)
    p = jax.nn.sigmoid(dist.logits)
    return jnp.stack([u < p, 1.0 - u < p]).astype(jnp.float32)


def _gumbel_max(dist, key):
    g = jax.random.gumbel(key, dist.logits.shape)
    return jax.nn.one_hot(jnp.argmax(jax.nn.log_softmax(dist.logits) + g), 4)[None]


def _hard_sample(dist, key):
    """The exact sample REBAR and RELAX draw from the key (z̃ reuses z's noise)."""
    return _gumbel_max(dist, key)


def _first_half_sample(dist, key):
    """The exact sample Gumbel-Rao draws from the first half of the key."""
    return _gumbel_max(dist, jax.random.split(key)[0])


def _set_sample(dist, key):
    """The k = 3 categories the unordered set estimator draws, and their weights p(s) R(S, s)."""
    log_p = jax.nn.log_softmax(dist.logits)
    _, idx = jax.lax.top_k(log_p + jax.random.gumbel(key, log_p.shape), 3)
    weights, _ = set_weights(jnp.exp(log_p[idx]))
    return jax.nn.one_hot(idx, 4), weights


CATS_PARAMS = {"logits": jnp.array([[0.2, -0.4, 1.0, 0.0], [0.5, 0.0, -1.0, 0.3]])}


def cats_dist(p):
    return distrax.OneHotCategorical(logits=p["logits"], dtype=jnp.float32)


def cats_f(p, y):
    # Two independent one-hot rows; depends on θ directly too.
    return jnp.prod(y @ CAT_VALUES) + 0.1 * jnp.sum(p["logits"] * y)


def _sf_sample(dist, key, k):
    return jax.vmap(lambda kk: dist.sample(seed=kk))(jax.random.split(key, k))


# (id, estimator, params, make_dist, f, the samples the estimator draws from key)
CASES = [
    ("score_function", gradest.score_function(), "gauss",
     lambda d, key: _sf_sample(d, key, 1)),
    ("score_function_loo", gradest.score_function(baselines.leave_one_out(3)), "gauss",
     lambda d, key: _sf_sample(d, key, 3)),
    ("score_function_optimal", gradest.score_function(baselines.optimal(3)), "gauss",
     lambda d, key: _sf_sample(d, key, 3)),
    ("score_function_optimal_pc", gradest.score_function(baselines.optimal(3, per_coordinate=True)),
     "gauss", lambda d, key: _sf_sample(d, key, 3)),
    ("score_function_ema", gradest.score_function(baselines.moving_average(0.9)), "gauss",
     lambda d, key: _sf_sample(d, key, 1)),
    ("score_function_categorical", gradest.score_function(baselines.leave_one_out(2)), "cat",
     lambda d, key: _sf_sample(d, key, 2)),
    ("pathwise", gradest.pathwise(), "gauss", lambda d, key: d.sample(seed=key)[None]),
    ("gumbel_softmax", gradest.gumbel_softmax(0.5), "cat", None),
    ("straight_through", gradest.straight_through(0.5), "cat", None),
    ("zeroth_order", gradest.zeroth_order(0.1, 3), "gauss",
     lambda d, key: d.sample(seed=jax.random.split(key)[0])[None]),
    ("zeroth_order_antithetic", gradest.zeroth_order(0.1, 2, antithetic=True), "gauss",
     lambda d, key: d.sample(seed=jax.random.split(key)[0])[None]),
    ("zeroth_order_optimal", gradest.zeroth_order(0.1, 3, baseline="optimal"), "gauss",
     lambda d, key: d.sample(seed=jax.random.split(key)[0])[None]),
    ("arm", gradest.arm(), "bern", _antithetic_pair),
    ("disarm", gradest.disarm(), "bern", _antithetic_pair),
    ("rebar", gradest.rebar(), "cat", _hard_sample),
    ("relax", gradest.relax(gradest.relax_control_variate(KEY, 4, 8)), "cat", _hard_sample),
    ("gumbel_rao", gradest.gumbel_rao(0.5, 4), "cat", _first_half_sample),
    ("unordered_set", gradest.unordered_set(3), "cat", _set_sample),
    # Its base draw is the first of five keys; on one categorical variable it is exact (the same
    # for every key), so the discrete case has two independent categorical variables.
    ("measure_valued", gradest.measure_valued(), "gauss",
     lambda d, key: d.sample(seed=jax.random.split(key, 5)[0])[None]),
    ("measure_valued_uncoupled", gradest.measure_valued(coupled=False), "gauss",
     lambda d, key: d.sample(seed=jax.random.split(key, 5)[0])[None]),
    ("measure_valued_categorical", gradest.measure_valued(), "cats",
     lambda d, key: d.sample(seed=key)[None]),
    # K = 8 draws, each the inner estimator's own draw from one of the split keys (with fewer, the
    # leave-one-out coefficient is a ratio over so few draws that float rounding moves it).
    ("control_variate", gradest.control_variate(gradest.score_function(), lambda p, x: jnp.sum(x),
                                                lambda p: jnp.sum(p["mu"]), 8), "gauss",
     lambda d, key: jnp.concatenate([_sf_sample(d, kk, 1) for kk in jax.random.split(key, 8)])),
    ("control_variate_categorical", gradest.control_variate(
        gradest.score_function(), lambda p, y: jnp.dot(y, CAT_VALUES),
        lambda p: jnp.dot(jax.nn.softmax(p["logits"]), CAT_VALUES), 8), "cat",
     lambda d, key: jnp.concatenate([_sf_sample(d, kk, 1) for kk in jax.random.split(key, 8)])),
    ("delta_method", gradest.delta_method(gradest.pathwise(), 8), "gauss",
     lambda d, key: jax.vmap(lambda kk: d.sample(seed=kk))(jax.random.split(key, 8))),
    ("delta_method_fixed", gradest.delta_method(gradest.score_function(), 1, coefficient=1.0),
     "gauss", lambda d, key: _sf_sample(d, jax.random.split(key, 1)[0], 1)),
]
PROBLEMS = {"gauss": (GAUSS_PARAMS, gauss_dist, gauss_f), "cat": (CAT_PARAMS, cat_dist, cat_f),
            "bern": (BERN_PARAMS, bern_dist, bern_f), "cats": (CATS_PARAMS, cats_dist, cats_f)}
IDS = [c[0] for c in CASES]


def _case(case):
    name, est, problem, sampler = case
    params, make_dist, f = PROBLEMS[problem]
    return est, params, make_dist, f, sampler


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("use_jit", [False, True], ids=["nojit", "jit"])
def test_surrogate_is_scalar_with_finite_gradient(case, use_jit):
    est, params, make_dist, f, _ = _case(case)
    fn = jax.value_and_grad(est.surrogate, argnums=1, has_aux=True)
    if use_jit:
        fn = jax.jit(fn, static_argnums=(2, 3))
    (value, aux), grad = fn(KEY, params, make_dist, f, est.init())
    chex.assert_shape(value, ())
    chex.assert_tree_all_finite((value, grad))
    chex.assert_trees_all_equal_shapes(grad, params)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_is_f_at_the_drawn_sample(case):
    est, params, make_dist, f, sampler = _case(case)
    value, _ = est.surrogate(KEY, params, make_dist, f, est.init())
    if sampler is None:
        # Gumbel: the straight-through value is f at an exact one-hot sample; the relaxed value
        # is f at softmax((logits + g)/τ) with g the Gumbel noise drawn from key.
        g = jax.random.gumbel(KEY, CAT_PARAMS["logits"].shape)
        perturbed = jax.nn.log_softmax(CAT_PARAMS["logits"]) + g
        if est.traits.name == "straight_through":
            y = jax.nn.one_hot(jnp.argmax(perturbed), 4)
        else:
            y = jax.nn.softmax(perturbed / 0.5)
        expected = f(params, y)
    else:
        z = sampler(make_dist(params), KEY)
        # A sampler gives the draws, or the draws and their weights (a weighted estimate).
        z, weights = z if isinstance(z, tuple) else (z, jnp.full(z.shape[0], 1.0 / z.shape[0]))
        expected = jnp.dot(weights, jax.vmap(lambda zi: f(params, zi))(z))
    chex.assert_trees_all_close(value, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit_equals_nojit_and_same_key_same_result(case):
    est, params, make_dist, f, _ = _case(case)
    grad_fn = jax.grad(est.surrogate, argnums=1, has_aux=True)
    g1, _ = grad_fn(KEY, params, make_dist, f, est.init())
    g2, _ = jax.jit(grad_fn, static_argnums=(2, 3))(KEY, params, make_dist, f, est.init())
    g3, _ = grad_fn(KEY, params, make_dist, f, est.init())
    chex.assert_trees_all_close(g1, g2, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(g1, g3)
    g_other, _ = grad_fn(jax.random.key(1), params, make_dist, f, est.init())
    assert any(not jnp.allclose(a, b) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g_other)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_one_trace_per_shape(case):
    est, params, make_dist, f, _ = _case(case)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def grad_fn(key, p, state):
        return jax.grad(est.surrogate, argnums=1, has_aux=True)(key, p, make_dist, f, state)[0]

    state = est.init()
    try:
        grad_fn(jax.random.key(0), params, state)
        shifted = jax.tree.map(lambda x: x * 1.1, params)
        grad_fn(jax.random.key(1), shifted, state)  # same shapes: no retrace
    finally:
        chex.clear_trace_counter()  # a failure here must not count against the next case


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_estimate_grad_is_the_mean_over_split_keys(case):
    """estimate_grad against its definition written out as a loop: sample s uses the s-th key of
    ``jax.random.split(key, S)``; the estimate is the mean of the S per-sample surrogate
    gradients, the value the mean of their forward values, and the diagnostics' variance their
    sample variance (numpy, ddof = 1)."""
    est, params, make_dist, f, _ = _case(case)
    num = 8
    out = gradest.estimate_grad(est, KEY, params, make_dist, f, num, diagnostics=True,
                                with_value=True)
    one = jax.jit(jax.value_and_grad(est.surrogate, argnums=1, has_aux=True),
                  static_argnums=(2, 3))
    values, grads = [], []
    for key in jax.random.split(KEY, num):
        (value, _), grad = one(key, params, make_dist, f, est.init())
        values.append(value)
        grads.append(jax.tree.map(np.asarray, grad))
    per_sample = jax.tree.map(lambda *g: np.stack(g), *grads)
    chex.assert_trees_all_close(out.grad, jax.tree.map(lambda g: g.mean(0), per_sample),
                                rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(out.diagnostics.variance,
                                jax.tree.map(lambda g: g.var(0, ddof=1), per_sample),
                                rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.value, np.mean(values), rtol=1e-5, atol=1e-6)
    plain = gradest.estimate_grad(est, KEY, params, make_dist, f, num)
    chex.assert_trees_all_close(plain.grad, out.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c[1].traits.supports == "continuous"],
                         ids=lambda c: c[0])
def test_continuous_estimators_on_discrete_distribution_raise(case):
    est = case[1]
    with pytest.raises(gradest.EstimatorError, match="continuous"):
        est.surrogate(KEY, CAT_PARAMS, cat_dist, cat_f, est.init())


@pytest.mark.parametrize("case", [c for c in CASES if c[1].traits.supports == "discrete"],
                         ids=lambda c: c[0])
def test_discrete_estimators_on_continuous_distribution_raise(case):
    est = case[1]
    with pytest.raises(gradest.EstimatorError, match="categorical"):
        est.surrogate(KEY, GAUSS_PARAMS, gauss_dist, gauss_f, est.init())


def test_non_scalar_objective_raises():
    est = gradest.pathwise()
    with pytest.raises(gradest.EstimatorError, match="scalar"):
        est.surrogate(KEY, GAUSS_PARAMS, gauss_dist, lambda p, x: x, est.init())


def test_estimator_state_updates_once_per_batch():
    est = gradest.score_function(baselines.moving_average(0.5))
    out = gradest.estimate_grad(est, KEY, GAUSS_PARAMS, gauss_dist, gauss_f, 64, with_value=True)
    assert int(out.state.count) == 1
    # b = m / (1 − 0.5) with m = 0.5 · mean f: the bias-corrected mean of the batch's f.
    chex.assert_trees_all_close(out.state.biased_mean / 0.5, out.value, rtol=1e-5)
    annealed = gradest.gumbel_softmax(gradest.exponential_anneal(1.0, 0.1, 0.5))
    state = annealed.init()
    for _ in range(3):
        state = gradest.estimate_grad(annealed, KEY, CAT_PARAMS, cat_dist, cat_f, 8, state=state).state
    assert int(state.step) == 3
