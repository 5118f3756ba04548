"""SAC's actor estimators estimate one gradient, and a user's own estimator plugs into SAC.

On a fixed SAC state (tiny networks, random critics, a fixed batch of 8 observations) the actor
gradient ∇θ mean_s E_{a~πθ(·|s)}[α log πθ(a|s) − min_j Q_j(s, a) − b(s)] is estimated S times
by each estimator through ``sac.actor_surrogate``, the function SAC trains with. Two unbiased
estimators must agree in every coordinate within 5 standard errors of the difference of their
Monte Carlo means, sqrt(se_A² + se_B²), se = sqrt(per-sample variance / S); exact enumeration has
no Monte Carlo error (se = 0). Zeroth order at ε = 0.01 is unbiased for the Gaussian-smoothed
objective, whose gradient differs from the exact one by O(ε²), far below its standard error
here; the measure-valued derivative on the tanh-Gaussian evaluates Q at tanh of shifted pre-tanh
draws and is unbiased as well. A negative control (an estimator that drops the score term)
must disagree by more than 5 standard errors, so the sample sizes give the comparison teeth. Measured (S = 2000): max |z|
1.1–2.4 for the pairs that must agree, 81 (continuous) and 19 (discrete) for the control.
The categorical estimators chosen by name (REBAR, RELAX, unordered set with k = 2 of 3
actions, measure-valued; Acrobot-v1) must agree with exact enumeration too: max |z| 2.2–3.2;
Gumbel-Rao at τ = 1, biased, 15.9, and the control 41.6.
"""

from typing import NamedTuple

import chex
import gymnax
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import gradest
from agents import rollout, sac

TINY = dict(actor_widths=(8,), critic_widths=(8,), batch_size=8, warmup_steps=16, buffer_size=64,
            total_steps=64, log_interval=24, eval_episodes=2, verbose=False)
NUM_SAMPLES = 2000   # per-sample gradients per estimator
NUM_STATES = 8
Z_BOUND = 5.0


# Tiny programs compiled once each: XLA's optimizations would cost more than they save.
pytestmark = pytest.mark.usefixtures("fast_compiles")


def _setup(env_id, estimator, baseline=None, samples=1):
    env, env_params = gymnax.make(env_id)
    return sac.make_setup(sac.SACConfig(**{**TINY, "num_action_samples": samples}), env,
                          env_params, estimator, baseline)


def _per_sample_grads(setup, key, move_phi=False):
    """S per-sample gradients of the batch's actor objective at a fixed state (the same state
    for every estimator: init_state's key is fixed), with the setup's baseline b(s). With
    ``move_phi``, REBAR's / RELAX's control-variate parameters φ are moved off their initial
    values by N(0, 0.5²) noise (unbiased for every φ; RELAX's network starts with output 0)."""
    k_state, k_obs, k_base, k_draws = jax.random.split(key, 4)
    state = sac.init_state(setup, k_state)
    if move_phi:
        phi = state.estimator_state.phi
        leaves, tree = jax.tree.flatten(phi)
        noise = [0.5 * jax.random.normal(k, x.shape)
                 for k, x in zip(jax.random.split(k_state, len(leaves)), leaves)]
        state = state.replace(estimator_state=state.estimator_state._replace(
            phi=jax.tree.unflatten(tree, [x + n for x, n in zip(leaves, noise)])))
    obs = jax.random.normal(k_obs, (NUM_STATES,) + state.env.obs.shape[1:])
    alpha = jnp.exp(state.log_alpha)
    baseline = setup.baseline.value(setup, state, k_base, obs, state.critic_params, alpha)

    def batch_objective(params, k):
        values, _ = jax.vmap(lambda kk, o, b: sac.actor_surrogate(
            setup.nets, setup.estimator, params, kk, o, state.critic_params, alpha, b,
            state.estimator_state, setup.actor_draws))(
                jax.random.split(k, NUM_STATES), obs, baseline)
        return jnp.mean(values)

    grads = jax.jit(jax.vmap(jax.grad(batch_objective), in_axes=(None, 0)))(
        state.actor_params, jax.random.split(k_draws, NUM_SAMPLES))
    flat = jax.vmap(lambda g: jax.flatten_util.ravel_pytree(g)[0])(grads)
    return np.asarray(flat, np.float64)


def _mean_and_se(samples):
    return samples.mean(0), samples.std(0, ddof=1) / np.sqrt(samples.shape[0])


def _max_z(a, b):
    (ma, sa), (mb, sb) = _mean_and_se(a), _mean_and_se(b)
    return float(np.max(np.abs(ma - mb) / np.sqrt(sa**2 + sb**2 + 1e-30)))


def _direct_only() -> gradest.GradientEstimator:
    """Negative control: surrogate f(θ, sg(a)), the score function without its score term."""
    traits = gradest.Traits("direct_only", unbiased=False, needs_differentiable_f=False,
                            supports="any")

    def surrogate(key, params, make_dist, f, state):
        z = jax.lax.stop_gradient(make_dist(params).sample(seed=key))
        value = f(params, z)
        return value, {"f": value}

    return gradest.GradientEstimator(tuple, surrogate, lambda s, aux: s, traits)


KEY = jax.random.key(42)


def test_continuous_estimators_agree():
    reference = _per_sample_grads(_setup("Pendulum-v1", gradest.pathwise()), KEY)
    others = {
        "score_function+V": _setup("Pendulum-v1", gradest.score_function(), sac.learned_value(),
                                   4),
        "score_function+LOO": _setup("Pendulum-v1", gradest.score_function(
            gradest.baselines.leave_one_out(4)), samples=4),
        "zeroth_order": _setup("Pendulum-v1", gradest.zeroth_order(0.01, 4, antithetic=True)),
        "measure_valued": _setup("Pendulum-v1", gradest.measure_valued()),
    }
    for name, setup in others.items():
        z = _max_z(_per_sample_grads(setup, KEY), reference)
        assert z < Z_BOUND, f"{name} vs pathwise: max |z| = {z:.2f}"
    control = _per_sample_grads(_setup("Pendulum-v1", _direct_only()), KEY)
    assert _max_z(control, reference) > Z_BOUND


def test_discrete_estimators_agree_with_exact_enumeration():
    exact = _per_sample_grads(_setup("CartPole-v1", gradest.exact_enumeration()), KEY)
    np.testing.assert_allclose(exact, np.broadcast_to(exact[0], exact.shape), atol=1e-6)
    for name, setup in {
        "score_function+V": _setup("CartPole-v1", gradest.score_function(), sac.learned_value(),
                                   4),
        "score_function+LOO": _setup("CartPole-v1", gradest.score_function(
            gradest.baselines.leave_one_out(4)), samples=4),
    }.items():
        z = _max_z(_per_sample_grads(setup, KEY), exact)
        assert z < Z_BOUND, f"{name} vs exact enumeration: max |z| = {z:.2f}"
    control = _per_sample_grads(_setup("CartPole-v1", _direct_only()), KEY)
    assert _max_z(control, exact) > Z_BOUND


@pytest.fixture(scope="module")
def acrobot_exact():
    """Exact enumeration's gradient on Acrobot-v1 (3 actions: the set estimator's k = 2 leaves
    one out), S identical rows."""
    return _per_sample_grads(_setup("Acrobot-v1", gradest.exact_enumeration()), KEY)


@pytest.mark.parametrize("name", ["rebar", "relax", "unordered_set", "measure_valued",
                                  "gumbel_rao", None])
def test_categorical_estimators_by_name_agree_with_exact_enumeration_iff_unbiased(
        acrobot_exact, name):
    """The categorical estimators as the command line builds them (the table of
    ``experiments/configs/estimators.py``, default hyperparameters; REBAR and RELAX at a moved
    φ) agree with exact enumeration within 5 standard errors if and only if their traits say
    unbiased. Gumbel-Rao (τ = 1) is biased, as is the negative control (``None``)."""
    from experiments.configs import estimators
    if name is None:
        estimator, setup = _direct_only(), _setup("Acrobot-v1", _direct_only())
    else:
        actor = estimators.make_actor(name, rollout.ActionSpec(True, 3))
        estimator = actor.estimator
        setup = _setup("Acrobot-v1", estimator, actor.baseline, actor.num_action_samples)
    z = _max_z(_per_sample_grads(setup, KEY, move_phi=name in ("rebar", "relax")),
               acrobot_exact)
    assert (z < Z_BOUND) == estimator.traits.unbiased, f"{name}: max |z| = {z:.2f}"


# --------------------------------------------------------------------------------------------
# A user's own estimator, written here, trains SAC without any change to agents/.


class _RunningMeanState(NamedTuple):
    mean: jax.Array    # the control variate c: a moving average of f over past batches
    calls: jax.Array   # how many batches updated it


def _score_function_with_running_mean(decay: float = 0.9) -> gradest.GradientEstimator:
    """Score function with its own control variate c, a moving average of f over earlier
    batches (free of the current draw, so unbiased): surrogate f + sg(f − c)(log q − sg(log q))."""
    traits = gradest.Traits("score_function[running_mean]", unbiased=True,
                            needs_differentiable_f=False, supports="any")

    def init():
        return _RunningMeanState(jnp.zeros(()), jnp.zeros((), jnp.int32))

    def surrogate(key, params, make_dist, f, state):
        dist = make_dist(params)
        z = jax.lax.stop_gradient(dist.sample(seed=key))
        fz = f(params, z)
        log_q = jnp.sum(dist.log_prob(z))
        magic = log_q - jax.lax.stop_gradient(log_q)    # 0 forward, ∇ log q backward
        return fz + jax.lax.stop_gradient(fz - state.mean) * magic, {"f": fz}

    def update(state, aux):
        return _RunningMeanState(decay * state.mean + (1 - decay) * jnp.mean(aux["f"]),
                                 state.calls + 1)

    return gradest.GradientEstimator(init, surrogate, update, traits)


def test_sac_trains_with_an_estimator_written_outside_agents():
    env, env_params = gymnax.make("Pendulum-v1")
    config = sac.SACConfig(**{**TINY, "num_action_samples": 2})
    stages = sac.make_stages(config, env, env_params, _score_function_with_running_mean())
    carry = jax.jit(stages.init)(jax.random.key(0))
    carry, metrics = jax.jit(stages.run, static_argnums=2)(carry, 0, stages.num_logs)
    chex.assert_tree_all_finite(metrics)
    chex.assert_tree_all_finite(stages.output(carry)[0])
    # The estimator's own state saw every gradient step, and its control variate moved off 0.
    updates = sac.sizes(config).num_updates * config.updates_per_step
    assert int(carry.state.estimator_state.calls) == updates
    assert float(carry.state.estimator_state.mean) != 0.0
