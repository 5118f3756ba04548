"""gymnax environments as the agents take them: built by id with one-line errors, and integer
observations one-hot encoded (``OneHotObservation``).

The agents' networks read an observation as a real vector (or array). gymnax has environments
whose observation is one of ``n`` integers (``spaces.Discrete``: FrozenLake-misc's cell); fed as
a number, such an observation would impose an order and a scale on states that have neither, so
``make`` wraps those environments to show the one-hot vector instead.
"""

from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
from gymnax.environments import spaces
from gymnax.wrappers.purerl import GymnaxWrapper

from agents import rollout


class OneHotObservation(GymnaxWrapper):
    """The environment ``env`` with its ``Discrete(n)`` observation k seen as e_k ∈ {0, 1}ⁿ
    (float32): ``reset``, ``step`` (``info["final_observation"]`` too), ``reset_env``,
    ``step_env`` and ``observation_space`` encode; all else is ``env``'s."""

    def __init__(self, env, env_params):
        super().__init__(env)
        space = env.observation_space(env_params)
        if not isinstance(space, spaces.Discrete):
            raise ValueError(f"OneHotObservation needs a Discrete observation space, got {space!r}")
        self.num_values = int(space.n)

    def encode(self, obs: jax.Array) -> jax.Array:
        return jax.nn.one_hot(obs, self.num_values, dtype=jnp.float32)

    def observation_space(self, params) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.num_values,), jnp.float32)

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return self.encode(obs), state

    def reset_env(self, key, params):
        obs, state = self._env.reset_env(key, params)
        return self.encode(obs), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action,
                                                                         params)
        info = {**info, "final_observation": self.encode(info["final_observation"])}
        return self.encode(obs), state, reward, terminated, truncated, info

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = self._env.step_env(key, state, action, params)
        return self.encode(obs), state, reward, terminated, info


def make(env_id: str):
    """``(env, env_params)`` of the gymnax environment ``env_id``, as the agents take it: a
    ``Discrete`` observation one-hot encoded. ``ValueError`` in one line for an unknown id
    (listing the known ones), an environment whose data cannot be downloaded, or an observation
    or action space no agent here handles."""
    if env_id not in gymnax.registered_envs:
        raise ValueError(f"unknown environment {env_id!r}; choose one of "
                         f"{', '.join(gymnax.registered_envs)}")
    try:
        env, env_params = gymnax.make(env_id)
    except OSError as e:   # urllib's URLError is an OSError
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{env_id} needs data downloaded when it is built, and the download "
                         f"failed ({reason}); choose another environment or run where the "
                         "internet is reachable") from None
    space = env.observation_space(env_params)
    if isinstance(space, spaces.Discrete):
        env = OneHotObservation(env, env_params)
    elif not isinstance(space, spaces.Box):
        raise ValueError(f"{env_id}'s observation space {type(space).__name__} is not supported: "
                         "the agents take a Box or a Discrete observation")
    try:
        rollout.action_spec(env, env_params)
    except ValueError as e:
        raise ValueError(f"{env_id}: {e}") from None
    return env, env_params
