"""Vectorized gymnax rollouts inside ``lax.scan``, greedy evaluation, observation statistics.

gymnax 1.x ``env.step(key, state, action, params)`` returns
``(obs, state, reward, terminated, truncated, info)`` and resets automatically: when the episode
ends, ``obs`` is already the first observation of the next episode and
``info["final_observation"]`` is the observation the step produced before the reset. Transitions
keep ``terminated`` (a terminal state: its value is 0) apart from ``truncated`` (the time limit:
the final state still has a value), and store that pre-reset observation as ``next_obs``, so the
returns in ``agents.returns`` bootstrap from V(final observation) at a truncation and stop only at a
termination (DESIGN.md §4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from gymnax.environments import spaces

Array = jax.Array
PRNGKey = jax.Array
# policy(key, obs[N, ...]) -> (action[N, ...], extras): extras (log-probs, values) are stored
# with the transition.
Policy = Callable[[PRNGKey, Array], tuple[Array, Any]]


class ActionSpec(NamedTuple):
    """What an agent needs to know about an action space.

    Attributes:
      discrete: categorical actions (``num_actions`` of them) or a continuous box.
      num_actions: number of categories; for a box, its dimension.
      low, high: bounds of a box (the agent acts in [−1, 1]ᴰ and ``to_env_action`` rescales).
    """

    discrete: bool
    num_actions: int
    low: Any = None
    high: Any = None


def action_spec(env, env_params) -> ActionSpec:
    """The ``ActionSpec`` of ``env``; ``ValueError`` for spaces no agent here supports."""
    space = env.action_space(env_params)
    if isinstance(space, spaces.Discrete):
        return ActionSpec(True, int(space.n))
    if isinstance(space, spaces.Box) and len(space.shape) <= 1:
        dim = int(space.shape[0]) if space.shape else 1
        low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), (dim,))
        high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), (dim,))
        return ActionSpec(False, dim, low, high)
    raise ValueError(f"unsupported action space {space!r}: need Discrete or a 1-D Box")


def to_env_action(spec: ActionSpec, action: Array) -> Array:
    """Maps the agent's action to the environment's: identity for discrete actions; for a box,
    clip to [−1, 1] (Gaussian samples are unbounded) and rescale affinely onto [low, high]."""
    if spec.discrete:
        return action
    unit = jnp.clip(action, -1.0, 1.0)
    # The bounds [D] broadcast over the leading (environment) axes explicitly.
    low, high = jnp.broadcast_to(spec.low, unit.shape), jnp.broadcast_to(spec.high, unit.shape)
    return low + 0.5 * (unit + 1.0) * (high - low)


class RolloutState(NamedTuple):
    """Where each of the N environments is: its state, its current observation and the return
    and length of its episode so far."""

    env_state: Any
    obs: Array
    episode_return: Array
    episode_length: Array


class Transition(NamedTuple):
    """One step of one environment (leading axes [T, N] after a rollout).

    ``next_obs`` is the observation the step produced *before* an auto-reset, so V(next_obs) is
    the bootstrap value at a truncation. ``episode_return``/``episode_length`` are the episode's
    totals so far, complete where ``terminated | truncated``.
    """

    obs: Array
    action: Array
    reward: Array
    terminated: Array
    truncated: Array
    next_obs: Array
    episode_return: Array
    episode_length: Array
    extras: Any


def reset(key: PRNGKey, env, env_params, num_envs: int) -> RolloutState:
    """Resets ``num_envs`` environments with independent keys."""
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs),
                                                           env_params)
    zeros = jnp.zeros((num_envs,), jnp.float32)
    return RolloutState(env_state, obs, zeros, jnp.zeros((num_envs,), jnp.int32))


def step(key: PRNGKey, env, env_params, spec: ActionSpec, state: RolloutState, action: Array,
         extras: Any = None) -> tuple[RolloutState, Transition]:
    """Steps all N environments with ``action`` (gymnax's ``env.step``, which resets an ended
    episode) and records the transition. ``key`` is one key (split here into one per
    environment) or already ``[N]`` keys, one per environment."""
    num_envs = state.obs.shape[0]
    env_keys = key if key.shape == (num_envs,) else jax.random.split(key, num_envs)
    obs, env_state, reward, terminated, truncated, info = jax.vmap(
        env.step, in_axes=(0, 0, 0, None))(env_keys, state.env_state, to_env_action(spec, action),
                                           env_params)
    reward = reward.astype(jnp.float32)
    episode_return = state.episode_return + reward
    episode_length = state.episode_length + 1
    transition = Transition(state.obs, action, reward, terminated, truncated,
                            info["final_observation"], episode_return, episode_length, extras)
    done = jnp.logical_or(terminated, truncated)
    new_state = RolloutState(env_state, obs, jnp.where(done, 0.0, episode_return),
                             jnp.where(done, 0, episode_length))
    return new_state, transition


class _Env(NamedTuple):
    # The static pieces a rollout step needs, bundled so the scan body is a plain function.
    env: Any
    env_params: Any
    spec: ActionSpec
    policy: Policy


def _rollout_step(ctx: _Env, state: RolloutState, keys: PRNGKey
                  ) -> tuple[RolloutState, Transition]:
    # keys: [1 + N], the policy's then one per environment.
    action, extras = ctx.policy(keys[0], state.obs)
    return step(keys[1:], ctx.env, ctx.env_params, ctx.spec, state, action, extras)


def rollout(key: PRNGKey, env, env_params, spec: ActionSpec, policy: Policy,
            state: RolloutState, num_steps: int) -> tuple[RolloutState, Transition]:
    """Runs ``policy`` in all N environments for ``num_steps`` steps.

    Returns the final ``RolloutState`` (episodes continue across rollouts) and the transitions,
    with leading axes ``[num_steps, N]``.
    """
    ctx = _Env(env, env_params, spec, policy)
    # Every step's keys (the policy's and one per environment) in one split before the scan:
    # the hash runs once, vectorized, instead of twice per step inside the loop.
    num_envs = state.obs.shape[0]
    keys = jax.random.split(key, (num_steps, 1 + num_envs))
    return jax.lax.scan(lambda s, k: _rollout_step(ctx, s, k), state, keys)


def completed_episode_return(transitions: Transition) -> tuple[Array, Array]:
    """(sum of the returns of episodes that ended in ``transitions``, how many ended)."""
    done = jnp.logical_or(transitions.terminated, transitions.truncated)
    return jnp.sum(jnp.where(done, transitions.episode_return, 0.0)), jnp.sum(done)


class _EvalCarry(NamedTuple):
    env_state: Any
    obs: Array
    total: Array
    alive: Array
    t: Array
    key: PRNGKey


def evaluate(key: PRNGKey, env, env_params, spec: ActionSpec, act: Callable[[Array], Array],
             num_episodes: int) -> Array:
    """Undiscounted returns of ``num_episodes`` episodes of the deterministic policy ``act``.

    Runs the episodes side by side until all have ended (a ``while_loop``, so a policy that fails
    fast costs little), each contributing its first episode only; ``act(obs[N]) -> action[N]``
    is e.g. the greedy or mean action. Returns ``[num_episodes]``.
    """
    key_reset, key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(key_reset, num_episodes), env_params)
    init = _EvalCarry(env_state, obs, jnp.zeros((num_episodes,)), jnp.ones((num_episodes,), bool),
                      jnp.zeros((), jnp.int32), key)
    # A bound in case an environment never ends (every gymnax env has a time limit).
    max_steps = env_params.max_steps_in_episode
    # One key per episode, folded with the step index: one hash per step instead of two splits.
    episode_keys = jax.random.split(key, num_episodes)

    def cond(c: _EvalCarry):
        return jnp.logical_and(jnp.any(c.alive), c.t < max_steps)

    def body(c: _EvalCarry):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(episode_keys, c.t)
        # Each episode counts until its first end; what ``env.step`` resets to afterwards is
        # never counted.
        obs, env_state, reward, terminated, truncated, _ = jax.vmap(
            env.step, in_axes=(0, 0, 0, None))(keys, c.env_state,
                                               to_env_action(spec, act(c.obs)), env_params)
        total = c.total + jnp.where(c.alive, reward, 0.0)
        alive = jnp.logical_and(c.alive, jnp.logical_not(jnp.logical_or(terminated, truncated)))
        return _EvalCarry(env_state, obs, total, alive, c.t + 1, c.key)

    return jax.lax.while_loop(cond, body, init).total


class RunningStats(NamedTuple):
    """Running mean and variance of observations (Chan et al.'s parallel update)."""

    mean: Array
    var: Array
    count: Array


def init_stats(obs_shape: tuple[int, ...]) -> RunningStats:
    return RunningStats(jnp.zeros(obs_shape), jnp.ones(obs_shape), jnp.asarray(1e-4))


def update_stats(stats: RunningStats, batch: Array) -> RunningStats:
    """Merges a batch ``[B, *obs_shape]`` into the running statistics."""
    batch = batch.reshape((-1,) + stats.mean.shape)
    n = batch.shape[0]
    b_mean, b_var = jnp.mean(batch, 0), jnp.var(batch, 0)
    total = stats.count + n
    delta = b_mean - stats.mean
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + b_var * n + delta ** 2 * stats.count * n / total
    return RunningStats(mean, m2 / total, total)


def normalize(stats: RunningStats, obs: Array, clip: float = 10.0) -> Array:
    """(obs − mean) / std, clipped to ±``clip`` so that a rare state cannot blow up the input."""
    mean, var = jnp.broadcast_to(stats.mean, obs.shape), jnp.broadcast_to(stats.var, obs.shape)
    return jnp.clip((obs - mean) / jnp.sqrt(var + 1e-8), -clip, clip)
