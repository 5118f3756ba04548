"""What REINFORCE, actor-critic and PPO share: an actor (categorical or Gaussian by the action
space) and a V(s) critic, rollouts of the current policy, greedy evaluation, and the
``loop.Agent`` built from an agent's own update function."""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from agents import diagnostics, loop, networks, optim, rollout as rollout_lib
from agents.config import CommonConfig
from agents.diagnostics import DiagInput, PolicyBatch

Array = jax.Array
PRNGKey = jax.Array
Params = Any


class Setup(NamedTuple):
    """The static pieces an agent is built from (not traced)."""

    env: Any
    env_params: Any
    spec: rollout_lib.ActionSpec
    actor: nn.Module
    critic: nn.Module
    obs_shape: tuple[int, ...]


def check_config(config: CommonConfig) -> None:
    """``ValueError`` on sizes that cannot work (checked before tracing)."""
    for name in ("num_envs", "num_steps", "total_steps", "log_interval", "eval_episodes",
                 "eval_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    sizes(config)


def sizes(config: CommonConfig) -> loop.LoopSizes:
    """One update is one rollout of ``num_envs · num_steps`` steps; no warm-up."""
    return loop.loop_sizes(config.total_steps, config.num_envs * config.num_steps,
                           config.log_interval)


def make_setup(config: CommonConfig, env, env_params) -> Setup:
    """Actor (categorical or Gaussian by the action space) and V(s) critic for ``env``."""
    spec = rollout_lib.action_spec(env, env_params)
    obs_shape = tuple(env.observation_space(env_params).shape)
    obs_ndim = len(obs_shape)
    if spec.discrete:
        actor = networks.CategoricalActor(spec.num_actions, tuple(config.actor_widths),
                                          config.activation, obs_ndim)
    else:
        actor = networks.GaussianActor(spec.num_actions, tuple(config.actor_widths),
                                       config.activation, config.state_dependent_std,
                                       config.log_std_init, obs_ndim=obs_ndim)
    critic = networks.ValueCritic(tuple(config.critic_widths), config.activation, obs_ndim)
    return Setup(env, env_params, spec, actor, critic, obs_shape)


def init_params(key: PRNGKey, setup: Setup) -> dict:
    """{"actor": ..., "critic": ...} for a dummy observation."""
    key_actor, key_critic = jax.random.split(key)
    dummy = jnp.zeros(setup.obs_shape)
    return {"actor": setup.actor.init(key_actor, dummy),
            "critic": setup.critic.init(key_critic, dummy)}


def make_optimizer(config: CommonConfig, num_gradient_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping (per network with ``clip_per_network``) then Adam, its step size
    annealed linearly to 0 over ``num_gradient_steps`` if ``anneal_lr``."""
    lr = (optim.linear_decay(config.learning_rate, num_gradient_steps) if config.anneal_lr
          else config.learning_rate)
    return optim.clipped_adam(lr, config.max_grad_norm, eps=1e-5,
                              per_network=config.clip_per_network)


def observe(config: CommonConfig, stats: rollout_lib.RunningStats, obs: Array) -> Array:
    """What the networks see: the observation, normalized if the config asks for it."""
    return rollout_lib.normalize(stats, obs) if config.normalize_obs else obs


def updated_stats(config: CommonConfig, stats: rollout_lib.RunningStats,
                  obs: Array) -> rollout_lib.RunningStats:
    return rollout_lib.update_stats(stats, obs) if config.normalize_obs else stats


def act(setup: Setup, config: CommonConfig, actor_params: Params,
        stats: rollout_lib.RunningStats, key: PRNGKey, obs: Array) -> tuple[Array, Array]:
    """a ~ πθ(·|s) for a batch of raw observations, with log πθ(a|s) (the rollout's extras)."""
    dist = setup.actor.apply(actor_params, observe(config, stats, obs))
    # sample, then log_prob: distrax's sample_and_log_prob adds a sample axis and broadcasts it
    # implicitly against the batch of logits, which jax_numpy_rank_promotion="raise" refuses.
    action = dist.sample(seed=key)
    return action, dist.log_prob(action)


def flatten(x: Array) -> Array:
    """[T, N, ...] → [T·N, ...]."""
    return x.reshape((-1,) + x.shape[2:])


def episode_metrics(transitions: rollout_lib.Transition) -> dict:
    total, count = rollout_lib.completed_episode_return(transitions)
    return {"return_sum": total, "episodes": count}


class AgentState(NamedTuple):
    """What one seed carries from update to update.

    ``extra`` holds agent-specific state (e.g. a moving-average baseline); ``diag`` the latest
    update's θ_old and batch, for the actor-gradient diagnostics once per log.
    """

    params: Params
    opt_state: Any
    env: rollout_lib.RolloutState
    obs_stats: rollout_lib.RunningStats
    diag: DiagInput
    extra: Any


def rollout(setup: Setup, config: CommonConfig, state: AgentState, key: PRNGKey
            ) -> tuple[rollout_lib.RolloutState, rollout_lib.Transition]:
    """``num_steps`` steps of every environment under the current policy."""
    policy = functools.partial(act, setup, config, state.params["actor"], state.obs_stats)
    return rollout_lib.rollout(key, setup.env, setup.env_params, setup.spec, policy, state.env,
                               config.num_steps)


def init_state(key: PRNGKey, setup: Setup, config: CommonConfig,
               opt: optax.GradientTransformation, extra: Any = None) -> AgentState:
    """Fresh parameters, optimizer state and environments; ``diag`` holds a placeholder batch
    of the right shapes (the first log overwrites it)."""
    key_params, key_env = jax.random.split(key)
    params = init_params(key_params, setup)
    env = rollout_lib.reset(key_env, setup.env, setup.env_params, config.num_envs)
    batch_size = config.num_envs * config.num_steps
    obs = jnp.zeros((batch_size,) + setup.obs_shape)
    # Zeros shaped like the actor's samples: nothing to draw or compute for a placeholder.
    action, log_prob = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype),
        jax.eval_shape(lambda p, o, k: act(setup, config, p, rollout_lib.init_stats(
            setup.obs_shape), k, o), params["actor"], obs, key))
    zeros = jnp.zeros((batch_size,))
    batch = PolicyBatch(obs, action, log_prob, zeros)
    return AgentState(params, opt.init(params), env, rollout_lib.init_stats(setup.obs_shape),
                      DiagInput(params["actor"], batch, zeros), extra)


def greedy_returns(setup: Setup, config: CommonConfig, state: AgentState, key: PRNGKey) -> Array:
    """Returns of ``eval_episodes`` episodes of the greedy (categorical) / mean (Gaussian) action."""
    def greedy(obs):
        return setup.actor.apply(state.params["actor"],
                                 observe(config, state.obs_stats, obs)).mode()
    return rollout_lib.evaluate(key, setup.env, setup.env_params, setup.spec, greedy,
                                config.eval_episodes)


def make_agent(name: str, setup: Setup, config: CommonConfig, opt: optax.GradientTransformation,
               update: Callable[[AgentState, PRNGKey], tuple[AgentState, dict]],
               extra: Any = None) -> loop.Agent:
    """The ``loop.Agent`` of an on-policy agent whose update is ``update``; its actor-gradient
    diagnostics are the per-sample policy-gradient terms of the latest update
    (``diagnostics.score_gradients``)."""

    def log_prob(params, obs, action):
        return setup.actor.apply(params, obs).log_prob(action)

    return loop.Agent(
        name=name, sizes=sizes(config), eval_every=config.eval_every, verbose=config.verbose,
        progress_keys=(),
        init=lambda key: init_state(key, setup, config, opt, extra),
        update=update,
        evaluate=functools.partial(greedy_returns, setup, config),
        actor_gradients=lambda state, key: diagnostics.score_gradients(log_prob, state.diag),
        output=lambda state: (state.params, state.obs_stats))
