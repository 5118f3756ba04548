"""``agents.envs``: integer observations seen one-hot (FrozenLake-misc trains), and environments
the agents cannot take are one-line ``ValueError``s."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import envs, rollout, runner
from experiments import configs

PPO = dict(num_envs=2, num_steps=8, log_interval=1, eval_episodes=2, actor_widths=[8],
           critic_widths=[8], num_minibatches=2, num_epochs=1)


def test_discrete_observation_is_one_hot_in_reset_and_step():
    """The wrapped FrozenLake shows e_k where gymnax's shows the cell k, in ``reset``, ``step``
    (its ``final_observation`` too) and ``step_env``/``reset_env``; rewards, flags and states
    are the unwrapped environment's."""
    env, params = envs.make("FrozenLake-misc")
    inner, _ = gymnax.make("FrozenLake-misc")
    assert isinstance(env, envs.OneHotObservation) and env.num_values == 16
    assert env.observation_space(params).shape == (16,)
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    raw_obs, raw_state = inner.reset(key, params)
    np.testing.assert_array_equal(obs, np.eye(16, dtype=np.float32)[int(raw_obs)])
    keys = jax.random.split(jax.random.key(1), 40)
    for k, action in zip(keys, np.arange(40) % 4):
        out = env.step(k, state, action, params)
        ref = inner.step(k, raw_state, action, params)
        np.testing.assert_array_equal(out[0], jax.nn.one_hot(ref[0], 16))
        np.testing.assert_array_equal(out[5]["final_observation"],
                                      jax.nn.one_hot(ref[5]["final_observation"], 16))
        for a, b in zip(out[2:5], ref[2:5]):
            np.testing.assert_array_equal(a, b)
        state, raw_state = out[1], ref[1]
    obs_env, _, _, _, _ = env.step_env(keys[0], state, 1, params)
    ref_env, _, _, _, _ = inner.step_env(keys[0], raw_state, 1, params)
    np.testing.assert_array_equal(obs_env, jax.nn.one_hot(ref_env, 16))
    obs_reset, _ = env.reset_env(keys[1], params)
    np.testing.assert_array_equal(obs_reset, jax.nn.one_hot(inner.reset_env(keys[1], params)[0],
                                                            16))


def test_ppo_trains_on_frozen_lake():
    """Two seeds of a tiny PPO on FrozenLake-misc: the actor's first layer takes the 16 one-hot
    inputs, and every metric is finite."""
    entry, config = configs.make_config("ppo", "FrozenLake-misc", PPO, 64, quiet=True)
    env, env_params = configs.make_env(entry, "ppo", "FrozenLake-misc")
    out, _, _ = runner.train_seeds(configs.make_stages(entry, config, env, env_params), 2, 0)
    kernels = [x.shape for x in jax.tree.leaves(out.params["actor"]) if x.ndim == 3]
    assert (2, 16, 8) in kernels, kernels     # [seeds, one-hot inputs, first hidden layer]
    for name, value in out.metrics.items():
        if name not in ("train_return",):     # NaN where no episode ended in the interval
            assert np.isfinite(value).all(), name
    assert np.asarray(out.metrics["env_steps"])[0, -1] == 64


def test_rollout_bootstraps_from_the_encoded_final_observation():
    env, params = envs.make("FrozenLake-misc")
    spec = rollout.action_spec(env, params)
    state = rollout.reset(jax.random.key(2), env, params, 3)

    def policy(key, obs):
        return jax.random.randint(key, obs.shape[:1], 0, 4), None
    _, transitions = rollout.rollout(jax.random.key(3), env, params, spec, policy, state, 50)
    assert transitions.next_obs.shape == (50, 3, 16)
    np.testing.assert_array_equal(jnp.sum(transitions.next_obs, -1), 1.0)


@pytest.mark.parametrize("env_id,message", [
    ("NoSuchEnv-v0", "unknown environment 'NoSuchEnv-v0'; choose one of CartPole-v1, "),
])
def test_unknown_environment_lists_the_known_ones(env_id, message):
    with pytest.raises(ValueError) as info:
        envs.make(env_id)
    assert str(info.value).startswith(message) and "FrozenLake-misc" in str(info.value)


def test_environment_needing_a_download_that_fails_is_one_line():
    try:
        envs.make("MNISTBandit-bsuite")
    except ValueError as e:
        assert "\n" not in str(e)
        assert str(e).startswith("MNISTBandit-bsuite needs data downloaded when it is built, "
                                 "and the download failed (")
    else:
        pytest.skip("MNISTBandit-bsuite built: its data could be downloaded here")
