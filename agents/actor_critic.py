"""Advantage actor-critic with the one-step TD advantage (seed 004).

Seed 004 estimates Q(s_t, a_t) ≈ r_t + γ V(s_{t+1}), so the policy gradient uses the TD error

    δ_t = r_t + γ (1 − term_t) V(s_{t+1}) − V(s_t),
    ∇θ J ≈ mean_t δ_t ∇θ log πθ(a_t|s_t),        L_V = mean_t δ_t²,

with s_{t+1} the pre-reset observation, so V(s_{t+1}) is the final observation's value at a
truncation and 0 only at a termination (``agents.returns``, λ = 0). The actor term is
``gradest.likelihood_ratio_loss`` at θ = θ_old (ρ = 1, gradient = the score-function estimate);
the critic regresses on the semi-gradient target sg(r + γ V(s')). Each rollout of
``num_envs × num_steps`` transitions gives one gradient step on actor, critic and entropy bonus.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from agents import (loop, losses, on_policy, optim, returns as returns_lib, rollout as rollout_lib,
                    validation)
from agents.config import CommonConfig, static
from agents.diagnostics import DiagInput, PolicyBatch
from agents.on_policy import AgentState, Setup

Array = jax.Array
sg = jax.lax.stop_gradient


@struct.dataclass
class ActorCriticConfig(CommonConfig):
    """Actor-critic's fields on top of ``CommonConfig``."""

    normalize_advantages: bool = static(False)  # δ ← (δ − mean) / std over the batch
    vf_coef: float = 0.5                    # weight of the squared TD error

    def field_checks(self) -> dict:
        v = validation
        return {**super().field_checks(), "normalize_advantages": v.boolean,
                "vf_coef": v.non_negative}


class Batch(NamedTuple):
    """One rollout, flattened: observations seen, actions, log-probs, (scaled) rewards and the
    pre-reset next observations with their termination flags (a truncation needs no flag: the
    pre-reset observation's value is the bootstrap)."""

    obs: Array
    action: Array
    log_prob: Array
    reward: Array
    next_obs: Array
    terminated: Array


def td_errors(setup: Setup, config: ActorCriticConfig, critic_params, batch: Batch
              ) -> tuple[Array, Array]:
    """(V(s_t), TD targets r_t + γ (1 − term_t) V(s_{t+1})) for a flat batch, with V(s_{t+1})
    of the pre-reset observation and no gradient (a semi-gradient target)."""
    values = setup.critic.apply(critic_params, batch.obs)
    next_values = sg(setup.critic.apply(critic_params, batch.next_obs))
    targets = jax.vmap(returns_lib.td_target, in_axes=(0, 0, 0, None))(
        batch.reward, next_values, batch.terminated, config.gamma)
    return values, targets


def advantages(config: ActorCriticConfig, values: Array, targets: Array) -> Array:
    delta = sg(targets - values)
    if config.normalize_advantages:
        delta = losses.standardize(delta)
    return delta


def loss(setup: Setup, config: ActorCriticConfig, params, batch: Batch) -> tuple[Array, dict]:
    """−mean δ ∇log π surrogate + c_v · ½ mean δ² − c_e H[π] on the batch."""
    values, targets = td_errors(setup, config, params["critic"], batch)
    adv = advantages(config, values, targets)
    dist = setup.actor.apply(params["actor"], batch.obs)
    actor_losses, _ = jax.vmap(losses.policy_gradient_loss)(dist.log_prob(batch.action),
                                                            batch.log_prob, adv)
    a_loss = jnp.mean(actor_losses)
    v_loss = 0.5 * jnp.mean((targets - values) ** 2)
    entropy = jnp.mean(dist.entropy())
    total = a_loss + config.vf_coef * v_loss - config.ent_coef * entropy
    return total, {"actor_loss": a_loss, "value_loss": v_loss, "entropy": entropy}


def make_batch(config: ActorCriticConfig, stats: rollout_lib.RunningStats,
               transitions: rollout_lib.Transition) -> Batch:
    flat = on_policy.flatten
    return Batch(flat(on_policy.observe(config, stats, transitions.obs)), flat(transitions.action),
                 flat(transitions.extras), flat(transitions.reward) * config.reward_scale,
                 flat(on_policy.observe(config, stats, transitions.next_obs)),
                 flat(transitions.terminated))


class _Ctx(NamedTuple):
    setup: Setup
    config: ActorCriticConfig
    opt: Any


def update(ctx: _Ctx, state: AgentState, key) -> tuple[AgentState, dict]:
    """One rollout and one gradient step."""
    setup, config = ctx.setup, ctx.config
    env, transitions = on_policy.rollout(setup, config, state, key)
    batch = make_batch(config, state.obs_stats, transitions)
    learner, metrics = optim.gradient_step(ctx.opt, functools.partial(loss, setup, config),
                                           optim.Learner(state.params, state.opt_state), batch)
    # Diagnostics on the raw TD errors δ = (r + γ V(s')) − V(s), whose baseline is V(s).
    values, targets = td_errors(setup, config, state.params["critic"], batch)
    diag = DiagInput(state.params["actor"], PolicyBatch(
        batch.obs, batch.action, batch.log_prob, targets - values), values)
    state = AgentState(learner.params, learner.opt_state, env,
                       on_policy.updated_stats(config, state.obs_stats, transitions.obs), diag,
                       state.extra)
    metrics.update(on_policy.episode_metrics(transitions))
    return state, metrics


def make_agent(config: ActorCriticConfig, env, env_params) -> loop.Agent:
    """Actor-critic on ``env`` as a ``loop.Agent``."""
    on_policy.check_config(config)
    setup = on_policy.make_setup(config, env, env_params)
    num_steps = on_policy.sizes(config).num_updates
    opt = on_policy.make_optimizer(config, num_steps)
    return on_policy.make_agent("actor_critic", setup, config, opt,
                                functools.partial(update, _Ctx(setup, config, opt)))


def make_stages(config: ActorCriticConfig, env, env_params) -> loop.Stages:
    """Actor-critic on ``env`` as resumable ``loop.Stages``."""
    return loop.make_stages(functools.partial(make_agent, env=env, env_params=env_params), config)


def make_train(config: ActorCriticConfig, env, env_params):
    """``train(key, config=config) -> TrainOutput`` for actor-critic on ``env``."""
    return loop.make_train(make_stages(config, env, env_params))
