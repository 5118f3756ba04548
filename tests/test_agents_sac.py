"""SAC: losses and targets on hand-computed cases, the tanh log-prob correction, truncation in the
replay data, α's update direction, every actor estimator under jit and vmap, and (slow) learning."""

import functools

import chex
import distrax
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradest
from agents import replay, rollout, sac

# Tiny sizes: every test here compiles small programs only.
TINY = dict(actor_widths=(8,), critic_widths=(8,), batch_size=8, warmup_steps=16, buffer_size=64,
            total_steps=64, log_interval=24, eval_episodes=2, verbose=False)


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _default_estimator(env_id):
    return gradest.exact_enumeration() if env_id == "CartPole-v1" else gradest.pathwise()


def _agent(env_id="Pendulum-v1", estimator=None, baseline=None, **overrides):
    """The agent's static pieces (``sac.Setup``) with tiny networks."""
    env, env_params = gymnax.make(env_id)
    estimator = _default_estimator(env_id) if estimator is None else estimator
    return sac.make_setup(sac.SACConfig(**{**TINY, **overrides}), env, env_params, estimator,
                          baseline)


def _filled_state(agent, key, size=16):
    """A fresh state whose buffer holds ``size`` random transitions (no environment steps, so
    nothing beyond the update itself needs compiling)."""
    k_init, k_obs, k_act, k_rew, k_term, k_next = jax.random.split(key, 6)
    state = sac.init_state(agent, k_init)
    obs_shape = (size,) + state.env.obs.shape[1:]
    experience = sac.Experience(
        obs=jax.random.normal(k_obs, obs_shape),
        action=sac.random_actions(agent.nets.spec, k_act, size),
        reward=jax.random.normal(k_rew, (size,)),
        terminated=jax.random.bernoulli(k_term, 0.1, (size,)),
        next_obs=jax.random.normal(k_next, obs_shape))
    return state.replace(buffer=replay.add(state.buffer, experience),
                         obs_stats=rollout.update_stats(state.obs_stats, experience.obs))


# --------------------------------------------------------------------------------------------
# Pure pieces.


def test_replay_ring_buffer_wraps_and_samples_filled_part():
    buf = replay.init({"x": jnp.zeros(()), "y": jnp.zeros((2,))}, capacity=5)
    for start in (0, 3):
        items = {"x": jnp.arange(start, start + 3, dtype=jnp.float32),
                 "y": jnp.ones((3, 2)) * start}
        buf = replay.add(buf, items)
    # 6 items in 5 slots: the first (x = 0) was overwritten by the last (x = 5).
    np.testing.assert_array_equal(buf.storage["x"], [5, 1, 2, 3, 4])
    assert int(buf.head) == 1 and int(buf.size) == 5
    sample = replay.sample(jax.random.key(0), buf, 200)
    assert set(np.asarray(sample["x"]).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    partial = replay.add(replay.init(jnp.zeros(()), 10), jnp.arange(3.0))
    assert set(np.asarray(replay.sample(jax.random.key(1), partial, 100)).tolist()) == {0, 1, 2}


def test_soft_value_takes_the_min_of_twin_q_and_the_entropy_term():
    q = jnp.array([[1.0, 3.0], [2.0, 0.0]])  # [critic, action]: min over critics = [1, 0]
    log_prob = jnp.log(jnp.array([0.25, 0.75]))
    alpha = 0.5
    # Exact (discrete) value: Σ_a π(a) (min_j Q_j − α log π(a)).
    expected = 0.25 * (1.0 - alpha * log_prob[0]) + 0.75 * (0.0 - alpha * log_prob[1])
    np.testing.assert_allclose(sac.soft_value(q, log_prob, jnp.exp(log_prob), alpha), expected,
                               rtol=1e-6)
    # One sample (continuous): min_j Q_j(s, a) − α log π(a|s).
    np.testing.assert_allclose(sac.soft_value(q[:, :1], jnp.array([-1.0]), jnp.ones(1), alpha),
                               1.0 + alpha, rtol=1e-6)


def test_critic_loss_pulls_both_critics_to_the_target():
    q = jnp.array([1.0, 3.0])
    np.testing.assert_allclose(sac.critic_loss(q, 2.0), 1.0)
    np.testing.assert_allclose(jax.grad(sac.critic_loss)(q, 2.0), [-1.0, 1.0])
    # The target is a constant: no gradient flows into it.
    assert float(jax.grad(sac.critic_loss, argnums=1)(q, 2.0)) == 0.0


@pytest.mark.parametrize("entropy, direction", [(-3.0, +1), (1.0, -1)])
def test_alpha_rises_below_the_target_entropy_and_falls_above(entropy, direction):
    target = -1.0
    grad = jax.grad(sac.alpha_loss)(jnp.asarray(0.0), jnp.asarray(entropy), target)
    assert np.sign(float(grad)) == -direction  # gradient descent moves log α by −grad


def test_alpha_update_inside_the_agent_moves_toward_the_target_entropy():
    # A target far above any reachable entropy: α must grow in every update.
    agent = _agent(target_entropy_scale=-50.0)
    state = _filled_state(agent, jax.random.key(0))
    new_state, metrics = jax.jit(functools.partial(sac.learn, agent))(state, jax.random.key(1))
    assert float(new_state.log_alpha) > float(state.log_alpha)
    assert float(metrics.entropy) < float(agent.target_entropy)


def test_tanh_log_prob_correction_inside_the_agent():
    """log π(a|s) = log N(u; μ, σ) − Σ log(1 − tanh² u) for the agent's actor (seed 000), both for
    a sample (evaluated at the pre-tanh u) and for a stored action (through atanh)."""
    agent = _agent(actor_widths=(16,))
    obs = jnp.array([0.3, -0.9, 1.5])
    params = agent.nets.actor.init(jax.random.key(0), obs)
    dist = sac.policy(agent.nets, params, obs)
    reference = distrax.Transformed(distrax.MultivariateNormalDiag(dist.loc, dist.scale),
                                    distrax.Block(distrax.Tanh(), 1))
    actions, log_probs = dist.sample_and_log_prob(seed=jax.random.key(1), sample_shape=(64,))
    u = jnp.arctanh(actions)
    by_hand = (jnp.sum(jax.scipy.stats.norm.logpdf(u, dist.loc[None], dist.scale[None]), -1)
               - jnp.sum(jnp.log(1.0 - actions**2), -1))
    np.testing.assert_allclose(log_probs, by_hand, rtol=1e-4, atol=1e-4)
    # distrax one action at a time: its bijectors broadcast a sample axis implicitly.
    np.testing.assert_allclose(dist.log_prob(actions), jax.vmap(reference.log_prob)(actions),
                               rtol=1e-4, atol=1e-4)
    # The correction matters: without it the density is that of u, not of a.
    assert not np.allclose(log_probs, jnp.sum(jax.scipy.stats.norm.logpdf(u, dist.loc[None],
                                                                           dist.scale[None]), -1))


# --------------------------------------------------------------------------------------------
# The agent.


def test_replay_keeps_the_pre_reset_observation_at_truncation():
    """Pendulum never terminates and truncates at 200 steps: the stored next_obs of step 199 is
    the final observation, not the first of the next episode, and terminated stays False."""
    agent = _agent(buffer_size=256)
    state = sac.init_state(agent, jax.random.key(0))
    state, _ = jax.lax.scan(functools.partial(sac.warmup_step, agent), state,
                            jax.random.split(jax.random.key(1), 201))
    data = state.buffer.storage
    assert not bool(jnp.any(data.terminated))
    continuing = np.arange(199)
    np.testing.assert_allclose(data.next_obs[continuing], data.obs[continuing + 1])
    assert not np.allclose(data.next_obs[199], data.obs[200])  # obs[200] is after the reset


@pytest.mark.parametrize("env_id, estimator", [
    ("CartPole-v1", gradest.pathwise()),
    ("CartPole-v1", gradest.zeroth_order(0.01, 4, antithetic=True)),
    ("Pendulum-v1", gradest.gumbel_softmax(1.0)),
    ("Pendulum-v1", gradest.exact_enumeration())])
def test_incompatible_estimator_raises_when_the_agent_is_built(env_id, estimator):
    with pytest.raises(gradest.EstimatorError):
        _agent(env_id, estimator)


def test_actions_per_state_must_fill_whole_estimator_calls():
    """A leave-one-out group of 4 is one call of 4 actions: 6 actions per state cannot be."""
    loo = gradest.score_function(gradest.baselines.leave_one_out(4))
    with pytest.raises(ValueError, match="multiple"):
        _agent(estimator=loo, num_action_samples=6)
    assert _agent(estimator=loo, num_action_samples=8).actor_draws == 2


def _loo(k):
    return gradest.score_function(gradest.baselines.leave_one_out(k))


# (env, estimator, baseline, actions per state). One fast case per estimator family; the other
# combinations run with -m slow.
ESTIMATOR_CASES = [
    ("Pendulum-v1", gradest.pathwise(), None, 1),
    ("Pendulum-v1", gradest.score_function(), sac.learned_value(), 4),
    ("Pendulum-v1", gradest.zeroth_order(0.01, 4, antithetic=True), None, 1),
    ("CartPole-v1", gradest.exact_enumeration(), None, 1),
    ("CartPole-v1", gradest.straight_through(gradest.exponential_anneal(1.0, 1e-4, 0.5)), None,
     1),
    pytest.param("Pendulum-v1", gradest.score_function(), None, 4, marks=pytest.mark.slow),
    pytest.param("Pendulum-v1", gradest.score_function(), sac.monte_carlo_value(4), 4,
                 marks=pytest.mark.slow),
    pytest.param("Pendulum-v1", _loo(4), None, 4, marks=pytest.mark.slow),
    pytest.param("CartPole-v1", gradest.gumbel_softmax(gradest.exponential_anneal(1.0, 1e-4, 0.5)),
                 None, 1, marks=pytest.mark.slow),
    pytest.param("CartPole-v1", gradest.score_function(), None, 4, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("env_id, estimator, baseline, samples", ESTIMATOR_CASES)
def test_every_estimator_updates_under_jit_and_vmap(env_id, estimator, baseline, samples):
    agent = _agent(env_id, estimator, baseline, num_action_samples=samples)
    # Two seeds of one start state (built eagerly: its small ops compile once for all cases).
    states = jax.tree.map(lambda x: jnp.stack([x, x]), _filled_state(agent, jax.random.key(0)))

    @jax.jit
    def run(states, keys):
        def updates(state, key):
            state, metrics = jax.lax.scan(functools.partial(sac.learn, agent), state,
                                          jax.random.split(key, 3))
            grads = sac.actor_gradients(agent, state, key)[""]
            return state, metrics, gradest.gradient_stats(grads)
        return jax.vmap(updates)(states, keys)

    new, metrics, stats = run(states, jax.random.split(jax.random.key(1), 2))
    chex.assert_tree_all_finite((metrics, stats.total_variance, stats.snr, new.actor_params))
    chex.assert_shape(metrics.critic_loss, (2, 3))
    assert np.all(np.asarray(new.num_updates) == 3)
    moved = jax.tree.map(lambda a, b: jnp.any(a != b), new.actor_params, states.actor_params)
    assert any(jax.tree.leaves(moved)), "the actor did not move"
    if estimator.traits.name.startswith(("gumbel", "straight")):
        assert np.all(np.asarray(new.estimator_state.step) == 3)  # the τ schedule advanced


@pytest.mark.parametrize("estimator, samples", [(gradest.pathwise(), 1), (_loo(4), 4),
                                                (gradest.zeroth_order(0.01, 4, antithetic=True),
                                                 1)])
def test_updates_from_a_saturated_state_stay_finite(estimator, samples):
    """A deliberately bad start (actor pre-activations ×100: μ and σ saturated, the actions at
    ±1 where log π and the tanh inverse are extreme; α at its cap; a large step size) must not
    produce NaN under any estimator: f clips the probed actions into the box, the gradients are
    clipped, α is capped."""
    agent = _agent(estimator=estimator, num_action_samples=samples, learning_rate=0.1,
                   max_grad_norm=10.0, max_alpha=1e3)
    state = _filled_state(agent, jax.random.key(0))
    state = state.replace(actor_params=jax.tree.map(lambda x: 100.0 * x, state.actor_params),
                          log_alpha=jnp.log(jnp.float32(1e3)))
    run = jax.jit(lambda s, k: jax.lax.scan(functools.partial(sac.learn, agent), s,
                                            jax.random.split(k, 5)))
    new, metrics = run(state, jax.random.key(1))
    chex.assert_tree_all_finite((metrics, new.actor_params, new.critic_params, new.log_alpha))
    assert float(jnp.exp(new.log_alpha)) <= 1e3 * (1 + 1e-5)
    # f is finite far outside the action box: zeroth-order probes a ± 10u land there.
    wide = gradest.zeroth_order(10.0, 4, antithetic=True)
    grad, _ = jax.grad(functools.partial(sac.actor_surrogate, agent.nets, wide), has_aux=True)(
        new.actor_params, jax.random.key(2), state.buffer.storage.obs[0], new.critic_params,
        jnp.float32(1.0), jnp.float32(0.0), ())
    chex.assert_tree_all_finite(grad)


def test_make_train_runs_under_jit_and_vmap_with_finite_metrics():
    env, env_params = gymnax.make("Pendulum-v1")
    config = sac.SACConfig(**TINY)
    out = jax.jit(jax.vmap(sac.make_train(config, env, env_params, gradest.pathwise())))(
        jax.random.split(jax.random.key(0), 2))
    chex.assert_shape(out.metrics["eval_returns"], (2, 2, config.eval_episodes))
    np.testing.assert_array_equal(out.metrics["env_steps"][0], [40, 64])
    finite = {k: v for k, v in out.metrics.items() if k != "train_return"}
    chex.assert_tree_all_finite((finite, out.params))


def test_loop_sizes_total_the_budget():
    sizes = sac.sizes(sac.SACConfig(total_steps=10_000, warmup_steps=256, log_interval=500))
    assert sizes.warmup_updates >= 256 and sizes.total_env_steps == 10_000
    assert sizes.updates_per_log >= 500
    config = sac.SACConfig(total_steps=50_000, warmup_steps=1000, num_envs=5, log_interval=500)
    sizes = sac.sizes(config)
    assert sizes.warmup_updates * 5 >= 1000 and sizes.total_env_steps == 50_000


# --------------------------------------------------------------------------------------------
# Learning (slow).


def _tuned(env_id, **overrides):
    from experiments import configs
    from experiments.configs import sac as sac_configs
    config = sac_configs.get_config(env_id)
    config.update(verbose=False, **overrides)
    return configs.build(configs.REGISTRY["sac"], config)


def _final_eval_return(env_id: str, total_steps: int, **overrides) -> float:
    """Mean final evaluation return of 2 seeds of the tuned config at ``total_steps``, with
    ``overrides`` of its fields."""
    from experiments import configs
    config = _tuned(env_id, total_steps=total_steps, **overrides)
    env, env_params = gymnax.make(env_id)
    out = jax.jit(jax.vmap(configs.REGISTRY["sac"].make_train(config, env, env_params)))(
        jax.random.split(jax.random.key(0), 2))
    return float(jnp.mean(out.metrics["eval_return"][:, -1]))


@pytest.mark.slow
def test_pathwise_sac_learns_pendulum():
    assert _final_eval_return("Pendulum-v1", 6000) > -400.0  # random policy: about −1200


@pytest.mark.slow
def test_exact_discrete_sac_learns_cartpole():
    assert _final_eval_return("CartPole-v1", 25_000) > 200.0  # random policy: about 20


@pytest.mark.slow
def test_rebar_discrete_sac_learns_cartpole():
    """REBAR, chosen by name, at the tuned 50k budget. Measured with ``experiments.train
    --config.actor_estimator=rebar --num_seeds=2``: 500 on both seeds from 19k steps on."""
    assert _final_eval_return("CartPole-v1", 50_000, actor_estimator="rebar") > 400.0
