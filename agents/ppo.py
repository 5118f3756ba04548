"""Proximal policy optimization (Schulman et al., 2017) for discrete and continuous actions.

Data are collected by π_old and carry no gradient (seed 000); the actor maximizes the clipped
likelihood-ratio surrogate of ``gradest.likelihood_ratio_loss``,

    L^clip(θ) = E[ min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â) ],     ρ = πθ(a|s) / π_old(a|s),

whose gradient at θ = θ_old is the score-function estimate E[Â ∇θ log πθ(a|s)]. Â is GAE(λ) with
truncation handled (``agents.returns``), normalized per minibatch. The critic minimizes the
clipped value loss, and the entropy bonus keeps the policy stochastic:

    loss = −L^clip + c_v · ½ max((V − G)², (V_old + clip(V − V_old, ±ε_v) − G)²) − c_e H[π].

Each update runs ``num_epochs`` passes of ``num_minibatches`` minibatches over one rollout,
all in ``lax.scan``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import struct

from agents import (loop, losses, on_policy, optim, returns as returns_lib, rollout as rollout_lib,
                    validation)
from agents.config import CommonConfig, static
from agents.diagnostics import DiagInput, PolicyBatch
from agents.on_policy import AgentState, Setup

Array = jax.Array


@struct.dataclass
class PPOConfig(CommonConfig):
    """PPO's fields on top of ``CommonConfig`` (defaults: PureJaxRL's CartPole configuration)."""

    num_epochs: int = static(4)             # passes over each rollout
    num_minibatches: int = static(4)        # minibatches per pass
    normalize_advantages: bool = static(True)  # Â ← (Â − mean) / std per minibatch
    gae_lambda: float = 0.95                # λ of GAE
    clip_epsilon: float = 0.2               # ε of the ratio clip
    value_clip_epsilon: float = 0.2         # ε_v of the value clip
    vf_coef: float = 0.5                    # weight c_v of the value loss

    def field_checks(self) -> dict:
        v = validation
        return {**super().field_checks(), "num_epochs": v.positive_int,
                "num_minibatches": v.positive_int, "normalize_advantages": v.boolean,
                "gae_lambda": v.unit_interval, "clip_epsilon": v.open_unit_interval,
                "value_clip_epsilon": v.positive_or_inf, "vf_coef": v.non_negative}

    def validate(self) -> None:
        """``CommonConfig.validate``, PPO's fields (0 < ε < 1: the ratio is clipped to
        [1 − ε, 1 + ε]; value_clip_epsilon inf: no value clip), and minibatches that split each
        rollout evenly."""
        super().validate()
        batch_size = self.num_envs * self.num_steps
        if batch_size % self.num_minibatches:
            raise ValueError(f"num_envs · num_steps = {batch_size} is not divisible by "
                             f"num_minibatches = {self.num_minibatches}")


class Batch(NamedTuple):
    """One rollout, flattened: the actor's samples plus the critic's old values and targets."""

    policy: PolicyBatch
    value: Array
    target: Array


def value_loss(value: Array, old_value: Array, target: Array, clip_epsilon: float | Array) -> Array:
    """½ max((V − G)², (V_old + clip(V − V_old, −ε, ε) − G)²) for one sample (PPO's value clip:
    the critic, like the actor, may not move far from where the data were collected)."""
    chex.assert_rank([value, old_value, target], 0)
    clipped = old_value + jnp.clip(value - old_value, -clip_epsilon, clip_epsilon)
    return 0.5 * jnp.maximum((value - target) ** 2, (clipped - target) ** 2)


def loss(setup: Setup, config: PPOConfig, params, batch: Batch) -> tuple[Array, dict]:
    """PPO's loss on a minibatch and its metrics (per-sample losses, vmapped)."""
    pb = batch.policy
    dist = setup.actor.apply(params["actor"], pb.obs)
    advantage = losses.standardize(pb.advantage) if config.normalize_advantages else pb.advantage
    actor_losses, lr_stats = jax.vmap(losses.policy_gradient_loss, in_axes=(0, 0, 0, None))(
        dist.log_prob(pb.action), pb.log_prob, advantage, config.clip_epsilon)
    values = setup.critic.apply(params["critic"], pb.obs)
    value_losses = jax.vmap(value_loss, in_axes=(0, 0, 0, None))(
        values, batch.value, batch.target, config.value_clip_epsilon)
    a_loss, v_loss, entropy = jnp.mean(actor_losses), jnp.mean(value_losses), jnp.mean(dist.entropy())
    total = a_loss + config.vf_coef * v_loss - config.ent_coef * entropy
    return total, {"actor_loss": a_loss, "value_loss": v_loss, "entropy": entropy,
                   "clip_fraction": jnp.mean(lr_stats.clipped.astype(jnp.float32)),
                   "approx_kl": jnp.mean(lr_stats.approx_kl)}


class _Ctx(NamedTuple):
    # Static pieces and traced hyperparameters the update functions share.
    setup: Setup
    config: PPOConfig
    opt: Any


def _epoch(ctx: _Ctx, batch: Batch, learner: optim.Learner, key) -> tuple[optim.Learner, dict]:
    """One pass over the rollout in ``num_minibatches`` shuffled minibatches."""
    size = batch.value.shape[0]
    m = ctx.config.num_minibatches
    perm = jax.random.permutation(key, size)
    minibatches = jax.tree.map(lambda x: x[perm].reshape((m, size // m) + x.shape[1:]), batch)
    step = functools.partial(optim.gradient_step, ctx.opt,
                             functools.partial(loss, ctx.setup, ctx.config))
    return jax.lax.scan(step, learner, minibatches)


def make_batch(setup: Setup, config: PPOConfig, params, stats: rollout_lib.RunningStats,
               transitions: rollout_lib.Transition) -> Batch:
    """Values, GAE advantages and λ-return targets of a rollout ``[T, N]``, flattened."""
    obs = on_policy.observe(config, stats, transitions.obs)
    next_obs = on_policy.observe(config, stats, transitions.next_obs)
    # V(s) and V of the pre-reset observation (the bootstrap value at a truncation) in one
    # critic pass over both [T, N] stacks.
    values, next_values = setup.critic.apply(params["critic"], jnp.stack([obs, next_obs]))
    advantages, targets = jax.vmap(returns_lib.gae, in_axes=(1, 1, 1, 1, 1, None, None),
                                   out_axes=1)(
        transitions.reward * config.reward_scale, values, next_values, transitions.terminated,
        transitions.truncated, config.gamma, config.gae_lambda)
    flat = on_policy.flatten
    policy = PolicyBatch(flat(obs), flat(transitions.action), flat(transitions.extras),
                         flat(advantages))
    return Batch(policy, flat(values), flat(targets))


def update(ctx: _Ctx, state: AgentState, key) -> tuple[AgentState, dict]:
    """One rollout, then ``num_epochs`` × ``num_minibatches`` gradient steps on it."""
    setup, config = ctx.setup, ctx.config
    key_rollout, key_epochs = jax.random.split(key)
    env, transitions = on_policy.rollout(setup, config, state, key_rollout)
    batch = make_batch(setup, config, state.params, state.obs_stats, transitions)
    learner, metrics = jax.lax.scan(functools.partial(_epoch, ctx, batch),
                                    optim.Learner(state.params, state.opt_state),
                                    jax.random.split(key_epochs, config.num_epochs))
    state = AgentState(learner.params, learner.opt_state, env,
                       on_policy.updated_stats(config, state.obs_stats, transitions.obs),
                       # Diagnostics on the raw GAE advantages, whose baseline is V(s).
                       DiagInput(state.params["actor"], batch.policy, batch.value),
                       state.extra)
    metrics = {k: jnp.mean(v) for k, v in metrics.items()}
    metrics.update(on_policy.episode_metrics(transitions))
    return state, metrics


def make_agent(config: PPOConfig, env, env_params) -> loop.Agent:
    """PPO on ``env`` as a ``loop.Agent``; ``ValueError`` for sizes that do not fit together."""
    on_policy.check_config(config)
    batch_size = config.num_envs * config.num_steps
    if batch_size % config.num_minibatches:
        raise ValueError(f"num_envs · num_steps = {batch_size} is not divisible by "
                         f"num_minibatches = {config.num_minibatches}")
    setup = on_policy.make_setup(config, env, env_params)
    num_steps = on_policy.sizes(config).num_updates * config.num_epochs * config.num_minibatches
    opt = on_policy.make_optimizer(config, num_steps)
    return on_policy.make_agent("ppo", setup, config, opt,
                                functools.partial(update, _Ctx(setup, config, opt)))


def make_stages(config: PPOConfig, env, env_params) -> loop.Stages:
    """PPO on ``env`` as resumable ``loop.Stages`` (init, run log intervals, output)."""
    return loop.make_stages(functools.partial(make_agent, env=env, env_params=env_params), config)


def make_train(config: PPOConfig, env, env_params):
    """``train(key, config=config) -> TrainOutput`` for PPO on ``env``; jit/vmap it over keys
    (and over configs that differ in traced fields only)."""
    return loop.make_train(make_stages(config, env, env_params))
