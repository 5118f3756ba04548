"""Traceable estimator hyperparameters: τ (Gumbel-Softmax, straight-through, the annealing
schedule), ε (zeroth order) and a constant baseline may be traced arrays, so a sweep over them is
one ``jax.jit(jax.vmap(...))``. Each sweep is compared with estimators built separately at each
concrete value and evaluated unjitted with the same keys (another code path: concrete floats
checked at build time, no vmap, no jit), to float rounding; the sweep's values must differ from
one another, so the traced value is really used. Bad concrete values still raise when built."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradest
from gradest import baselines

KEYS = jax.random.split(jax.random.key(0), 64)
LOGITS = jnp.array([0.3, -0.2, 0.5])
COST = jnp.array([1.0, -2.0, 0.5])


def categorical(logits):
    return distrax.Categorical(logits=logits)


def one_hot_categorical(logits):
    return distrax.OneHotCategorical(logits=logits)


def linear_cost(params, y):
    # f(θ, y) = ⟨c, y⟩ on (relaxed) one-hot y, plus a θ term so the direct gradient enters too.
    return jnp.dot(COST, y) + 0.1 * jnp.sum(params ** 2)


def step_cost(params, x):
    # A non-differentiable objective (zeroth order needs none): a step, smoothed by ε.
    del params
    return jnp.sum(jnp.where(x > 0.2, 1.0, 0.0) * jnp.array([1.0, -1.0, 2.0]))


def mean_grad(estimator, params, make_dist, f):
    """∇θ of the mean surrogate over KEYS: the Monte Carlo estimate of ∇θ E[f]."""
    return jax.grad(lambda p: gradest.batch_surrogate(estimator, KEYS, p, make_dist, f,
                                                      estimator.init())[0])(params)


def check_sweep(build, values, make_dist, f, params=LOGITS):
    swept = jax.jit(jax.vmap(lambda v: mean_grad(build(v), params, make_dist, f)))(
        jnp.asarray(values, jnp.float32))
    separate = np.stack([np.asarray(mean_grad(build(float(v)), params, make_dist, f))
                         for v in values])
    np.testing.assert_allclose(np.asarray(swept), separate, rtol=2e-5, atol=1e-6)
    for i in range(1, len(values)):
        assert np.max(np.abs(separate[i] - separate[0])) > 1e-3


@pytest.mark.parametrize("hard", [False, True], ids=["gumbel_softmax", "straight_through"])
def test_temperature_sweep_is_one_jit_vmap(hard):
    check_sweep(lambda tau: gradest.gumbel_softmax(tau, hard=hard), [0.3, 0.7, 1.5],
                one_hot_categorical, linear_cost)


def test_annealing_schedule_sweep_is_one_jit_vmap():
    """init, rate and floor traced together: τ_t = max(floor, init · exp(−rate · t)) in closed
    form, and the estimator at its state after 3 updates equals separate builds."""
    inits, rates, floors = np.array([1.0, 2.0, 0.8]), np.array([0.5, 0.1, 1.0]), np.array(
        [0.3, 0.5, 0.6])
    steps = np.arange(6)
    taus = jax.jit(jax.vmap(lambda i, r, f: jax.vmap(gradest.exponential_anneal(i, r, f))(
        steps)))(inits, rates, floors)
    expected = np.maximum(floors[:, None], inits[:, None] * np.exp(-rates[:, None] * steps))
    np.testing.assert_allclose(np.asarray(taus), expected, rtol=1e-6)

    def grad_at_step3(init, rate, floor):
        est = gradest.straight_through(gradest.exponential_anneal(init, rate, floor))
        state = est.init()._replace(step=jnp.int32(3))
        return jax.grad(lambda p: gradest.batch_surrogate(est, KEYS, p, one_hot_categorical,
                                                          linear_cost, state)[0])(LOGITS)

    swept = jax.jit(jax.vmap(grad_at_step3))(inits, rates, floors)
    for i in range(len(inits)):
        one = grad_at_step3(float(inits[i]), float(rates[i]), float(floors[i]))
        np.testing.assert_allclose(np.asarray(swept[i]), np.asarray(one), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("antithetic", [False, True])
def test_epsilon_sweep_is_one_jit_vmap(antithetic):
    check_sweep(lambda eps: gradest.zeroth_order(eps, num_directions=4, antithetic=antithetic),
                [0.05, 0.2, 1.0], None, step_cost, params=jnp.array([0.1, 0.3, 0.25]))


def test_constant_baseline_sweep_is_one_jit_vmap():
    check_sweep(lambda b: gradest.score_function(baselines.constant(b)), [-1.0, 0.0, 2.5],
                categorical, lambda p, z: COST[z] + 0.1 * jnp.sum(p ** 2))


@pytest.mark.parametrize("build", [
    lambda: gradest.gumbel_softmax(0.0),
    lambda: gradest.straight_through(float("nan")),
    lambda: gradest.exponential_anneal(init=0.5, rate=0.1, floor=1.0),
    lambda: gradest.exponential_anneal(init=1.0, rate=-0.1, floor=0.5),
    lambda: gradest.zeroth_order(epsilon=-0.1),
    lambda: baselines.constant(float("inf")),
], ids=["tau0", "tau_nan", "floor_gt_init", "rate_neg", "eps_neg", "const_inf"])
def test_bad_concrete_values_raise_even_when_built_inside_jit(build):
    # A Python number stays concrete inside a trace: it is checked when the estimator is built.
    with pytest.raises(gradest.EstimatorError):
        jax.jit(lambda x: (build(), x)[1])(1.0)


def test_a_traced_temperature_must_be_a_scalar():
    with pytest.raises(gradest.EstimatorError, match="scalar"):
        jax.jit(lambda t: gradest.gumbel_softmax(t).init())(jnp.ones(2))
