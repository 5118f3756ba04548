"""Every agent trains for a few updates under jit and vmap with finite metrics (tiny sizes)."""

import functools

import chex
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradest
from agents import actor_critic, config as config_lib, losses, networks, on_policy, ppo, reinforce

# Tiny sizes: 2 envs × 8 steps, 3 logs of 2 updates, 2 evaluation episodes.
TINY = dict(num_envs=2, num_steps=8, total_steps=2 * 8 * 6, log_interval=2, eval_episodes=2,
            actor_widths=(8,), critic_widths=(8,), verbose=False)
NUM_SEEDS = 2
NUM_LOGS = 3


def _env(env_id):
    env, params = gymnax.make(env_id)
    # Short episodes, so that some end within the tiny budget and train_return is defined.
    return env, params.replace(max_steps_in_episode=10)


def _check_output(out, extra_keys=()):
    metrics = out.metrics
    for key in ("train_return", "eval_return", "entropy", "actor_loss", "grad_variance",
                "grad_snr", "env_steps", *extra_keys):
        assert key in metrics, key
        chex.assert_shape(metrics[key], (NUM_SEEDS, NUM_LOGS))
    chex.assert_shape(metrics["eval_returns"], (NUM_SEEDS, NUM_LOGS, TINY["eval_episodes"]))
    chex.assert_tree_all_finite(metrics)
    chex.assert_tree_all_finite(out.params)
    np.testing.assert_array_equal(metrics["env_steps"][0], [32, 64, 96])


CASES = [
    ("ppo", "CartPole-v1", ppo.PPOConfig(num_minibatches=2, **TINY)),
    ("ppo", "Pendulum-v1", ppo.PPOConfig(num_minibatches=2, normalize_obs=True, **TINY)),
    ("actor_critic", "CartPole-v1", actor_critic.ActorCriticConfig(**TINY)),
    ("reinforce", "Acrobot-v1", reinforce.ReinforceConfig(baseline="moving_average", **TINY)),
]
MODULES = {"ppo": ppo, "actor_critic": actor_critic, "reinforce": reinforce}


@pytest.mark.parametrize("agent,env_id,config", CASES, ids=[f"{a}-{e}" for a, e, _ in CASES])
def test_trains_under_jit_and_vmap(agent, env_id, config):
    env, params = _env(env_id)
    train = MODULES[agent].make_train(config, env, params)
    out = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), NUM_SEEDS))
    extra = ("clip_fraction", "approx_kl", "value_loss") if agent == "ppo" else ()
    _check_output(out, extra)


def test_vmap_over_traced_hyperparameters():
    """Seeds × learning rates × γ in one call; a different learning rate changes the result."""
    env, params = _env("CartPole-v1")
    config = reinforce.ReinforceConfig(baseline="learned", **TINY)
    train = reinforce.make_train(config, env, params)
    configs = config_lib.stack_configs([config.replace(learning_rate=1e-2, gamma=0.9),
                                     config.replace(learning_rate=1e-4, gamma=0.99)])
    keys = jnp.stack([jax.random.key(0)] * NUM_SEEDS)
    out = jax.jit(jax.vmap(train))(keys, configs)
    _check_output(out, ("value_loss",))
    # Same key, different hyperparameters: different parameters.
    leaf = jax.tree.leaves(out.params["actor"])[0]
    assert not np.allclose(leaf[0], leaf[1])


def test_static_fields_cannot_change_at_call_time():
    env, params = _env("CartPole-v1")
    config = actor_critic.ActorCriticConfig(**TINY)
    train = actor_critic.make_train(config, env, params)
    with pytest.raises(ValueError, match="static"):
        train(jax.random.key(0), config.replace(num_steps=4))


def test_bad_sizes_are_rejected():
    env, params = _env("CartPole-v1")
    with pytest.raises(ValueError, match="less than one update"):
        ppo.make_train(ppo.PPOConfig(num_minibatches=2, **{**TINY, "total_steps": 4}), env, params)
    with pytest.raises(ValueError, match="divisible"):
        ppo.make_train(ppo.PPOConfig(num_minibatches=3, **TINY), env, params)
    with pytest.raises(ValueError, match="baseline"):
        reinforce.make_train(reinforce.ReinforceConfig(baseline="optimal", **TINY), env, params)
    with pytest.raises(ValueError, match="unsupported action space"):
        on_policy.make_setup(ppo.PPOConfig(**TINY), _DictActions(), params)


class _DictActions:
    """An environment stub whose action space no agent supports."""

    def action_space(self, params):
        return gymnax.environments.spaces.Dict({})


def test_policy_gradient_loss_is_score_function_at_theta_old():
    """At θ = θ_old the per-sample loss gradient is −Â ∇θ log πθ(a|s)."""
    actor = networks.CategoricalActor(3, (8,))
    params = actor.init(jax.random.key(0), jnp.zeros(4))
    obs, action, adv = jnp.ones(4), jnp.array(2), jnp.array(1.7)
    old_log_prob = actor.apply(params, obs).log_prob(action)

    def loss(p):
        return losses.policy_gradient_loss(actor.apply(p, obs).log_prob(action), old_log_prob, adv)[0]

    expected = jax.tree.map(lambda g: -adv * g,
                            jax.grad(lambda p: actor.apply(p, obs).log_prob(action))(params))
    chex.assert_trees_all_close(jax.grad(loss)(params), expected, rtol=1e-5)
    np.testing.assert_allclose(loss(params), -adv, rtol=1e-6)


def test_networks():
    obs = jnp.ones((5, 3))
    key = jax.random.key(0)
    for actor in (networks.GaussianActor(2, (16,), state_dependent_std=True),
                  networks.GaussianActor(2, (16,), log_std_init=-0.5),
                  networks.TanhGaussianActor(2, (16,))):
        params = actor.init(key, obs)
        dist = actor.apply(params, obs)
        # sample, then log_prob: distrax's sample_and_log_prob broadcasts a sample axis
        # implicitly, which the suite's rank-promotion setting refuses.
        action = dist.sample(seed=key)
        log_prob = dist.log_prob(action)
        chex.assert_shape(action, (5, 2))
        chex.assert_shape(log_prob, (5,))
        chex.assert_tree_all_finite(log_prob)
    tanh_actions = networks.TanhGaussianActor(2, (16,)).apply(params, obs).sample(seed=key)
    assert bool(jnp.all(jnp.abs(tanh_actions) < 1.0))
    chex.assert_shape(networks.ValueCritic((16,)).apply(
        networks.ValueCritic((16,)).init(key, obs), obs), (5,))
    q = networks.QCritic((16,))
    chex.assert_shape(q.apply(q.init(key, obs, jnp.ones((5, 2))), obs, jnp.ones((5, 2))), (5,))
    qd = networks.DiscreteQCritic(4, (16,))
    chex.assert_shape(qd.apply(qd.init(key, obs), obs), (5, 4))
    image_actor = networks.CategoricalActor(3, (16,), obs_ndim=3)
    image = jnp.ones((5, 4, 4, 2))
    chex.assert_shape(image_actor.apply(image_actor.init(key, image), image).logits, (5, 3))
    with pytest.raises(ValueError, match="activation"):
        networks.activation("nope")


def _assert_orthogonal(w, gain, atol=1e-5):
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    chex.assert_trees_all_close(gram, gain ** 2 * jnp.eye(gram.shape[0]), atol=atol)


def test_network_init_draws_every_kernel_orthogonal_with_its_gain():
    """Each kernel, whatever its shape, has orthonormal rows or columns scaled by its layer's gain
    (√2 hidden, 0.01 policy head, 1 value head), biases start at 0, and distinct layers and
    distinct keys get distinct draws."""
    obs = jnp.zeros((5,))
    actor = networks.CategoricalActor(3, (16, 8))
    params = actor.init(jax.random.key(1), obs)["params"]
    _assert_orthogonal(params["MLP_0"]["Dense_0"]["kernel"], np.sqrt(2.0))   # 5 × 16: rows
    _assert_orthogonal(params["MLP_0"]["Dense_1"]["kernel"], np.sqrt(2.0))   # 16 × 8: columns
    _assert_orthogonal(params["Dense_0"]["kernel"], 0.01, atol=1e-9)         # 8 × 3
    for bias in (params["MLP_0"]["Dense_0"]["bias"], params["Dense_0"]["bias"]):
        np.testing.assert_array_equal(bias, 0.0)
    critic = networks.QCritic((16, 16))
    cp = critic.init(jax.random.key(1), obs, jnp.zeros((2,)))["params"]
    _assert_orthogonal(cp["MLP_0"]["Dense_0"]["kernel"], np.sqrt(2.0))        # 7 × 16
    _assert_orthogonal(cp["Dense_0"]["kernel"], 1.0)                          # 16 × 1
    w0, w1 = cp["MLP_0"]["Dense_1"]["kernel"], cp["MLP_0"]["Dense_0"]["kernel"]
    _assert_orthogonal(w0, np.sqrt(2.0))
    assert float(jnp.max(jnp.abs(w0[:7] - w1))) > 0.1                        # not one draw twice
    # Under vmap over keys (twin critics, seeds) each key gets its own orthogonal kernels.
    stacked = jax.vmap(lambda k: critic.init(k, obs, jnp.zeros((2,))))(
        jax.random.split(jax.random.key(2), 2))["params"]["MLP_0"]["Dense_1"]["kernel"]
    for w in stacked:
        _assert_orthogonal(w, np.sqrt(2.0))
    assert float(jnp.max(jnp.abs(stacked[0] - stacked[1]))) > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "sac"])
def test_eval_every_skips_evaluations_and_changes_nothing_else(agent):
    """With ``eval_every=2`` over 3 log intervals, the second and the last are evaluated, and
    their returns, like every training metric, equal those of the run that evaluates always
    (evaluation draws its own key); the skipped first interval reports NaN."""
    from agents import sac

    if agent == "ppo":
        env, params = _env("CartPole-v1")
        config = ppo.PPOConfig(num_minibatches=2, **TINY)
        make_train = ppo.make_train
    else:
        env, params = gymnax.make("Pendulum-v1")
        config = sac.SACConfig(actor_widths=(8,), critic_widths=(8,), batch_size=8,
                               warmup_steps=16, buffer_size=64, total_steps=16 + 3 * 8,
                               log_interval=8, eval_episodes=2, verbose=False)
        make_train = functools.partial(sac.make_train, estimator=gradest.pathwise())
    keys = jax.random.split(jax.random.key(0), NUM_SEEDS)
    every = jax.jit(jax.vmap(make_train(config, env, params)))(keys)
    sparse = jax.jit(jax.vmap(make_train(config.replace(eval_every=2), env, params)))(keys)
    chex.assert_shape(sparse.metrics["eval_return"], (NUM_SEEDS, NUM_LOGS))
    assert np.isnan(sparse.metrics["eval_return"][:, 0]).all()
    assert np.isnan(sparse.metrics["eval_returns"][:, 0]).all()
    for i in (1, 2):
        np.testing.assert_array_equal(sparse.metrics["eval_returns"][:, i],
                                      every.metrics["eval_returns"][:, i])
    for name, value in every.metrics.items():
        if not name.startswith("eval_"):
            np.testing.assert_array_equal(sparse.metrics[name], value, err_msg=name)
    jax.tree.map(np.testing.assert_array_equal, sparse.params, every.params)
