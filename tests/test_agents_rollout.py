"""Rollouts keep termination apart from truncation and bootstrap from the pre-reset observation."""

import functools
import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
import gymnax
from gymnax.environments import environment, spaces

from agents import returns, rollout


@struct.dataclass
class CounterState(environment.EnvState):
    position: jax.Array


@struct.dataclass
class CounterParams(environment.EnvParams):
    max_steps_in_episode: int = 3


class Counter(environment.Environment):
    """A hand-built probe: the observation counts the steps of the episode (reset to 0), every
    step pays 1, action 1 terminates the episode, and the time limit truncates it."""

    @property
    def default_params(self) -> CounterParams:
        return CounterParams()

    def step_env(self, key, state, action, params):
        new = CounterState(time=state.time + 1, position=state.position + 1.0)
        terminated = action == 1
        return self.get_obs(new), new, jnp.array(1.0), terminated, {}

    def reset_env(self, key, params):
        state = CounterState(time=0, position=jnp.array(0.0))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.array([state.position])

    def is_terminated(self, state, params):
        return jnp.array(False)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0.0, 10.0, (1,))


def _scripted(actions: jax.Array, key, obs):
    """A policy that plays the fixed ``actions`` (one per environment), with no extras."""
    del key
    return actions, jnp.zeros(obs.shape[0])


def _run(actions_per_step, num_envs=2):
    env = Counter()
    params = env.default_params
    spec = rollout.action_spec(env, params)
    state = rollout.reset(jax.random.key(0), env, params, num_envs)
    transitions = []
    for a in actions_per_step:
        policy = functools.partial(_scripted, jnp.full((num_envs,), a, jnp.int32))
        state, tr = rollout.rollout(jax.random.key(1), env, params, spec, policy, state, 1)
        transitions.append(tr)
    tr = jax.tree.map(lambda *xs: jnp.concatenate(xs), *transitions)
    return state, tr


def _value(obs):
    # A stand-in critic: V(s) = 10 · position.
    return 10.0 * obs[..., 0]


def test_truncation_bootstraps_from_final_observation():
    state, tr = _run([0, 0, 0, 0, 0])
    # Observations 0, 1, 2 | 0, 1: the time limit (3 steps) cut the first episode after step 2.
    np.testing.assert_array_equal(tr.obs[:, 0, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(tr.truncated[:, 0], [False, False, True, False, False])
    np.testing.assert_array_equal(tr.terminated[:, 0], [False] * 5)
    # next_obs is the pre-reset observation (3 at the truncation), not the reset one (0).
    np.testing.assert_array_equal(tr.next_obs[:, 0, 0], [1, 2, 3, 1, 2])
    np.testing.assert_array_equal(state.obs[:, 0], [2, 2])
    np.testing.assert_array_equal(tr.episode_return[2], [3.0, 3.0])
    # γ = ½, V(s) = 10·position: G4 = 1 + ½·V(2) = 11, G3 = 1 + ½·11 = 6.5,
    # G2 = 1 + ½·V(final obs 3) = 16 (not 1 + ½·V(reset obs 0) = 1), G1 = 9, G0 = 5.5.
    got = returns.discounted_returns(tr.reward[:, 0], tr.terminated[:, 0], tr.truncated[:, 0],
                                     _value(tr.next_obs[:, 0]), 0.5)
    chex.assert_trees_all_close(got, jnp.array([5.5, 9.0, 16.0, 6.5, 11.0]))


def test_termination_stops_bootstrapping():
    _, tr = _run([0, 1, 0, 0])
    np.testing.assert_array_equal(tr.terminated[:, 0], [False, True, False, False])
    np.testing.assert_array_equal(tr.truncated[:, 0], [False] * 4)
    np.testing.assert_array_equal(tr.obs[:, 0, 0], [0, 1, 0, 1])
    # G3 = 1 + ½·V(2) = 11, G2 = 6.5, G1 = 1 (terminal: V(2) ignored), G0 = 1.5.
    got = returns.discounted_returns(tr.reward[:, 0], tr.terminated[:, 0], tr.truncated[:, 0],
                                     _value(tr.next_obs[:, 0]), 0.5)
    chex.assert_trees_all_close(got, jnp.array([1.5, 1.0, 6.5, 11.0]))


def _cartpole_rollout(num_steps: int = 12) -> rollout.Transition:
    """Transitions of 3 CartPole environments with a 5-step time limit under a random policy."""
    env, params = gymnax.make("CartPole-v1")
    params = params.replace(max_steps_in_episode=5)
    spec = rollout.action_spec(env, params)
    state = rollout.reset(jax.random.key(0), env, params, 3)

    def policy(key, obs):
        return jax.random.randint(key, (obs.shape[0],), 0, 2), jnp.zeros(obs.shape[0])

    return jax.jit(functools.partial(rollout.rollout, env=env, env_params=params, spec=spec,
                                     policy=policy, num_steps=num_steps))(
        jax.random.key(1), state=state)[1]


def test_cartpole_time_limit_is_truncation_with_final_observation():
    tr = _cartpole_rollout()
    done = tr.truncated | tr.terminated
    assert bool(jnp.any(tr.truncated))
    # Where the episode went on, next_obs is the next step's obs; where it was truncated it is
    # the pre-reset observation, which differs from the reset observation that follows.
    same = jnp.all(tr.next_obs[:-1] == tr.obs[1:], axis=-1)
    np.testing.assert_array_equal(same, ~done[:-1])
    np.testing.assert_array_equal(tr.episode_length[tr.truncated], 5)


def test_action_spec_and_rescaling():
    env, params = gymnax.make("Pendulum-v1")
    spec = rollout.action_spec(env, params)
    assert not spec.discrete and spec.num_actions == 1
    chex.assert_trees_all_close(rollout.to_env_action(spec, jnp.array([[-3.0], [0.0], [0.5]])),
                                jnp.array([[-2.0], [0.0], [1.0]]))
    env, params = gymnax.make("CartPole-v1")
    assert rollout.action_spec(env, params) == rollout.ActionSpec(True, 2)


def test_evaluate_counts_first_episode_only():
    env = Counter()
    params = env.default_params
    spec = rollout.action_spec(env, params)
    got = rollout.evaluate(jax.random.key(0), env, params, spec,
                           lambda obs: jnp.zeros(obs.shape[0], jnp.int32), 4)
    chex.assert_trees_all_close(got, jnp.full((4,), 3.0))


def test_running_stats_match_batch_moments():
    x = jax.random.normal(jax.random.key(0), (100, 3)) * 2.0 + 1.0
    stats = rollout.init_stats((3,))
    for chunk in jnp.split(x, 4):
        stats = rollout.update_stats(stats, chunk)
    chex.assert_trees_all_close(stats.mean, jnp.mean(x, 0), atol=1e-3)
    chex.assert_trees_all_close(stats.var, jnp.var(x, 0), rtol=1e-3)

