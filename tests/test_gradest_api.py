"""Bad input raises clear errors; diagnostics and the likelihood-ratio loss are right (the
clipped loss against rlax's, an independent implementation)."""

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

import gradest
from gradest import baselines, diagnostics, testing

KEY = jax.random.key(0)
P = {"mu": jnp.array(0.5), "sigma": jnp.array(1.0)}


def normal(p):
    return distrax.Normal(p["mu"], p["sigma"])


def quad(p, x):
    del p
    return x**2


@pytest.mark.parametrize("build", [
    lambda: gradest.gumbel_softmax(0.0),
    lambda: gradest.gumbel_softmax(-1.0),
    lambda: gradest.gumbel_softmax(float("nan")),
    lambda: gradest.straight_through(float("inf")),
    lambda: gradest.exponential_anneal(init=1.0, rate=0.1, floor=0.0),
    lambda: gradest.exponential_anneal(init=0.5, rate=0.1, floor=1.0),
    lambda: gradest.zeroth_order(epsilon=0.0),
    lambda: gradest.zeroth_order(epsilon=-0.1),
    lambda: baselines.leave_one_out(1),
    lambda: baselines.optimal(1),
    lambda: baselines.moving_average(1.5),
    lambda: baselines.constant(float("nan")),
    lambda: gradest.score_function(baseline="mean"),
    lambda: gradest.gumbel_softmax_sample(KEY, jnp.zeros(3), 0.0),
    lambda: testing.gaussian("cos", sigma=-1.0),
], ids=["tau0", "tau_neg", "tau_nan", "tau_inf", "floor0", "floor_gt_init", "eps0", "eps_neg",
        "loo1", "optimal1", "decay", "const_nan", "baseline_str", "sample_tau0", "problem_sigma"])
def test_bad_hyperparameters_raise_when_built(build):
    with pytest.raises(gradest.EstimatorError):
        build()


def test_estimators_can_be_built_inside_jit():
    @jax.jit
    def grad(key):
        est = gradest.zeroth_order(0.1, 2)
        sched = gradest.gumbel_softmax(gradest.exponential_anneal(1.0, 0.1, 0.5))
        del sched
        return jax.grad(est.surrogate, argnums=1, has_aux=True)(key, P, normal, quad, est.init())[0]

    chex.assert_tree_all_finite(grad(KEY))


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_scale_raises_before_any_nan(sigma):
    params = {"mu": jnp.array(0.5), "sigma": jnp.array(sigma)}
    with pytest.raises(gradest.EstimatorError, match="scale"):
        gradest.estimate_grad(gradest.pathwise(), KEY, params, normal, quad, 8)


def test_mismatched_shapes_raise():
    with pytest.raises(gradest.EstimatorError, match="shape"):
        gradest.estimate_grad(gradest.pathwise(), KEY, P, normal, quad, 8,
                              exact={"mu": jnp.zeros(2), "sigma": jnp.zeros(())})
    with pytest.raises(gradest.EstimatorError, match="shaped like params"):
        gradest.estimate_grad(gradest.score_function(baselines.constant({"mu": 1.0})), KEY, P,
                              normal, quad, 8)
    with pytest.raises(gradest.EstimatorError, match="one shape"):
        gradest.likelihood_ratio_loss(jnp.zeros(3), jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(gradest.EstimatorError, match="scalar"):
        gradest.estimate_grad(gradest.pathwise(), KEY, {"mu": jnp.zeros(2), "sigma": jnp.ones(2)},
                              normal, lambda p, x: x, 8)


def test_bad_call_arguments_raise():
    with pytest.raises(gradest.EstimatorError, match="typed PRNG key"):
        gradest.estimate_grad(gradest.pathwise(), jax.random.PRNGKey(0), P, normal, quad, 8)
    with pytest.raises(gradest.EstimatorError, match="num_samples"):
        gradest.estimate_grad(gradest.pathwise(), KEY, P, normal, quad, 0)
    with pytest.raises(gradest.EstimatorError, match="num_samples"):
        gradest.estimate_grad(gradest.pathwise(), KEY, P, normal, quad, 1, diagnostics=True)


def test_check_compatible():
    gradest.check_compatible(gradest.pathwise(), kind="continuous", differentiable_f=True)
    gradest.check_compatible(gradest.score_function(), kind="discrete", differentiable_f=False)
    with pytest.raises(gradest.EstimatorError, match="continuous"):
        gradest.check_compatible(gradest.pathwise(), kind="discrete", differentiable_f=True)
    with pytest.raises(gradest.EstimatorError, match="not differentiable"):
        gradest.check_compatible(gradest.pathwise(), kind="continuous", differentiable_f=False)
    with pytest.raises(gradest.EstimatorError, match="discrete"):
        gradest.check_compatible(gradest.gumbel_softmax(1.0), kind="continuous", differentiable_f=True)


def test_gradient_stats_match_numpy():
    g = {"a": jax.random.normal(KEY, (50, 3)) + 2.0, "b": jax.random.normal(jax.random.key(1), (50,))}
    stats = diagnostics.gradient_stats(g)
    ga, gb = np.asarray(g["a"], np.float64), np.asarray(g["b"], np.float64)
    np.testing.assert_allclose(stats.variance["a"], ga.var(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(stats.stderr["b"], gb.std(ddof=1) / np.sqrt(50), rtol=1e-5)
    total = ga.var(0, ddof=1).sum() + gb.var(ddof=1)
    np.testing.assert_allclose(stats.total_variance, total, rtol=1e-5)
    norm = np.sqrt((ga.mean(0) ** 2).sum() + gb.mean() ** 2)
    np.testing.assert_allclose(stats.snr, norm / np.sqrt(total), rtol=1e-5)
    cmp = diagnostics.compare(stats, {"a": jnp.full(3, 2.0), "b": jnp.array(0.0)})
    np.testing.assert_allclose(cmp.zscore["b"], gb.mean() / (gb.std(ddof=1) / np.sqrt(50)), rtol=1e-4)
    mean = np.concatenate([ga.mean(0), [gb.mean()]])
    exact = np.array([2.0, 2.0, 2.0, 0.0])
    np.testing.assert_allclose(cmp.cosine, mean @ exact / np.linalg.norm(mean) / np.linalg.norm(exact),
                               rtol=1e-5)
    chex.assert_tree_all_finite(jax.jit(diagnostics.summarize)(g, {"a": jnp.ones(3), "b": jnp.array(1.0)}))
    with pytest.raises(ValueError, match="at least 2"):
        diagnostics.gradient_stats({"a": jnp.zeros((1, 3))})
    with pytest.raises(ValueError, match="same leading"):
        diagnostics.gradient_stats({"a": jnp.zeros((4, 3)), "b": jnp.zeros((5,))})


def test_likelihood_ratio_loss_value_gradient_and_clipping():
    """At θ = θ_old the value is Â and the gradient Â ∇ log π (score function); outside the clip
    range the clipped objective has zero gradient in the direction that would leave it."""
    logits = jnp.array([0.2, -0.1, 0.4])
    action, adv = 2, 1.5

    def objective(lg, old_logp, clip):
        logp = jax.nn.log_softmax(lg)[action]
        return gradest.likelihood_ratio_loss(logp, old_logp, jnp.asarray(adv), clip)[0]

    old = jax.nn.log_softmax(logits)[action]
    chex.assert_trees_all_close(objective(logits, old, 0.2), adv, rtol=1e-6)
    score = jax.grad(lambda lg: jax.nn.log_softmax(lg)[action])(logits)
    chex.assert_trees_all_close(jax.grad(objective)(logits, old, 0.2), adv * score, rtol=1e-5)
    # ρ = e^0.5 > 1 + ε with Â > 0: clipped, no gradient.
    chex.assert_trees_all_close(jax.grad(objective)(logits, old - 0.5, 0.2), jnp.zeros(3), atol=1e-7)
    # Unclipped: gradient ρ Â ∇ log π.
    chex.assert_trees_all_close(jax.grad(objective)(logits, old - 0.5, None),
                                np.exp(0.5) * adv * score, rtol=1e-5)
    _, st = gradest.likelihood_ratio_loss(jnp.array([0.0, 0.5]), jnp.array([0.0, 0.0]),
                                          jnp.ones(2), 0.2)
    np.testing.assert_array_equal(st.clipped, [False, True])
    np.testing.assert_allclose(st.approx_kl, [0.0, np.exp(0.5) - 1 - 0.5], rtol=1e-6)
    with pytest.raises(gradest.EstimatorError, match="clip_epsilon"):
        gradest.likelihood_ratio_loss(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), 0.0)


@pytest.mark.parametrize("clip", [0.1, 0.2, 0.5])
def test_clipped_loss_and_gradient_agree_with_rlax(clip):
    """PPO's loss, the batch mean of −min(ρ Â, clip(ρ, 1 ± ε) Â), and its gradient w.r.t. log πθ
    equal rlax.clipped_surrogate_pg_loss on ratios spread across both sides of the clip range and
    advantages of both signs (so that each branch of the min is taken)."""
    k_new, k_old, k_adv = jax.random.split(jax.random.key(3), 3)
    log_prob = jax.random.normal(k_new, (64,)) * 0.5 - 1.0
    old_log_prob = jax.random.normal(k_old, (64,)) * 0.5 - 1.0
    advantage = jax.random.normal(k_adv, (64,))

    def ours(lp):
        objective, _ = gradest.likelihood_ratio_loss(lp, old_log_prob, advantage, clip)
        return -jnp.mean(objective)

    def reference(lp):
        return rlax.clipped_surrogate_pg_loss(jnp.exp(lp - old_log_prob), advantage, clip)

    ratio = np.exp(np.asarray(log_prob - old_log_prob))
    assert np.mean(np.abs(ratio - 1) > clip) > 0.1 and np.mean(np.abs(ratio - 1) < clip) > 0.1
    np.testing.assert_allclose(ours(log_prob), reference(log_prob), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(ours)(log_prob), jax.grad(reference)(log_prob),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("est", [
    gradest.pathwise(), gradest.score_function(), gradest.score_function(baselines.optimal(2)),
    gradest.zeroth_order(0.1, 2), gradest.gumbel_softmax(0.5),
], ids=lambda e: e.traits.name)
def test_surrogate_called_directly_rejects_a_raw_prng_key(est):
    """The contract checks the key itself, not only estimate_grad: eagerly, under grad and vmap."""
    make_dist, f = normal, quad
    if est.traits.supports == "discrete":
        make_dist = lambda p: distrax.Categorical(logits=p["mu"] * jnp.ones(3))  # noqa: E731
        f = lambda p, y: jnp.sum(y)  # noqa: E731
    raw = jax.random.PRNGKey(0)
    with pytest.raises(gradest.EstimatorError, match="jax.random.key"):
        est.surrogate(raw, P, make_dist, f, est.init())
    with pytest.raises(gradest.EstimatorError, match="jax.random.key"):
        jax.grad(est.surrogate, argnums=1, has_aux=True)(raw, P, make_dist, f, est.init())
    with pytest.raises(gradest.EstimatorError, match="jax.random.key"):
        jax.vmap(est.surrogate, in_axes=(0, None, None, None, None))(
            jax.random.split(raw, 4), P, make_dist, f, est.init())
    # A typed key works through the same path.
    value, _ = est.surrogate(KEY, P, make_dist, f, est.init())
    assert np.isfinite(float(value))


LOGITS = {"logits": jnp.array([0.5, -1.0, 2.0])}
VALUES = jnp.array([1.0, -2.0, 3.0])


def _categorical(p):
    return distrax.OneHotCategorical(logits=p["logits"], dtype=jnp.float32)


def _dot(p, y):
    del p
    return jnp.dot(y, VALUES)


def test_schedule_with_nonpositive_tau_raises_when_concrete_and_is_the_tau_to_0_limit_when_traced():
    """τ ≤ 0 from a schedule: EstimatorError when the surrogate runs eagerly (τ concrete); under
    jit (τ traced) the documented limit τ → 0⁺: y is the exact Gumbel-Max one-hot, f(y) its value,
    and the gradient of the relaxed sample is 0, finite (not NaN, not the anti-softmax of τ < 0)."""
    est = gradest.gumbel_softmax(lambda step: -1.0 + 0.0 * step)
    with pytest.raises(gradest.EstimatorError, match="temperature"):
        est.surrogate(KEY, LOGITS, _categorical, _dot, est.init())
    grad_fn = jax.jit(jax.grad(est.surrogate, argnums=1, has_aux=True), static_argnums=(2, 3))
    grads, aux = grad_fn(KEY, LOGITS, _categorical, _dot, est.init())
    hard = jax.nn.one_hot(jnp.argmax(LOGITS["logits"] + jax.random.gumbel(KEY, (3,))), 3)
    assert float(aux["f"]) == float(jnp.dot(hard, VALUES))
    assert float(aux["temperature"]) == float(jnp.float32(1e-30))
    np.testing.assert_array_equal(np.asarray(grads["logits"]), np.zeros(3))


def test_constant_baseline_builds_under_jit_and_checks_concrete_values():
    """b traced under jit: built and applied (the gradient equals the eager one); a concrete
    non-finite b still raises when built."""
    def grad(b, key):
        est = gradest.score_function(baselines.constant(b))
        return jax.grad(est.surrogate, argnums=1, has_aux=True)(key, P, normal, quad, est.init())[0]

    jitted = jax.jit(grad)(jnp.float32(0.7), KEY)
    chex.assert_trees_all_close(jitted, grad(0.7, KEY), rtol=1e-6)
    jitted_tree = jax.jit(grad)({"mu": jnp.float32(0.7), "sigma": jnp.float32(-0.3)}, KEY)
    chex.assert_tree_all_finite(jitted_tree)
    with pytest.raises(gradest.EstimatorError, match="finite"):
        baselines.constant({"mu": 1.0, "sigma": float("inf")})
