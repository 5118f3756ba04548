"""REINFORCE with discounted reward-to-go and a baseline (seed 004).

Seed 004's estimator over played games,

    ∇θ J ≈ mean_t ∇θ log πθ(a_t|s_t) (R_t − b(s_t)),     R_t = Σ_{t' ≥ t} γ^{t'−t} r_{t'},

is the score-function estimator with f = R_t; any b that does not depend on a_t leaves it unbiased
and can cut its variance. Baselines (``baseline``):

* ``"none"``: b = 0 (``gradest.baselines.none``);
* ``"moving_average"``: b = a bias-corrected moving average of past batches' returns
  (``gradest.baselines.moving_average``; past batches only, so it stays unbiased);
* ``"learned"``: b(s) = V(s), a critic regressed on R_t (seed 004: "b(s) = V^π(s) cuts the
  variance considerably").

R_t is the Monte Carlo return of the game: it stops at termination *and* at the time limit (the
played game ends there; a critic is not used to extend it, so the three baselines estimate the
same gradient). Rollouts run continuously; a step whose episode has not ended by the end of the
rollout has no complete return yet and is masked out (``returns.complete_episode_mask``); the
episode's remaining steps are complete in the next rollout. The actor term is
``gradest.likelihood_ratio_loss`` at θ = θ_old: ρ = 1 and its gradient is the score-function
estimate. One gradient step per rollout.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

import gradest
from agents import (loop, losses, on_policy, optim, returns as returns_lib, rollout as rollout_lib,
                    validation)
from agents.config import CommonConfig, static
from agents.diagnostics import DiagInput, PolicyBatch
from agents.losses import masked_mean
from agents.on_policy import AgentState, Setup

Array = jax.Array
sg = jax.lax.stop_gradient

BASELINES = ("none", "moving_average", "learned")


@struct.dataclass
class ReinforceConfig(CommonConfig):
    """REINFORCE's fields on top of ``CommonConfig``."""

    baseline: str = static("learned")       # one of BASELINES
    baseline_decay: float = static(0.9)     # decay of the moving-average baseline
    vf_coef: float = 0.5                    # weight of the critic's squared error (learned b)

    def field_checks(self) -> dict:
        v = validation
        return {**super().field_checks(), "baseline": v.one_of(BASELINES),
                "baseline_decay": v.unit_interval, "vf_coef": v.non_negative}


class Batch(NamedTuple):
    """One rollout, flattened: samples, their reward-to-go and whether it is complete."""

    obs: Array
    action: Array
    log_prob: Array
    returns: Array
    mask: Array


def reward_to_go(config: ReinforceConfig, transitions: rollout_lib.Transition) -> tuple[Array, Array]:
    """R_t for a rollout ``[T, N]`` (no bootstrap anywhere) and the mask of complete returns."""
    rewards = transitions.reward * config.reward_scale
    returns = jax.vmap(returns_lib.discounted_returns, in_axes=(1, 1, 1, 1, None), out_axes=1)(
        rewards, transitions.terminated, transitions.truncated, jnp.zeros_like(rewards),
        config.gamma)
    mask = jax.vmap(returns_lib.complete_episode_mask, in_axes=(1, 1), out_axes=1)(
        transitions.terminated, transitions.truncated)
    return returns, mask


class _Ctx(NamedTuple):
    setup: Setup
    config: ReinforceConfig
    opt: Any
    baseline: gradest.baselines.Baseline   # unused (none) for the learned baseline


def baseline_values(ctx: _Ctx, critic_params, baseline_state, batch: Batch) -> Array:
    """b for every sample: V(s) (no gradient: the actor must not move the baseline) or the
    state-independent baseline from its state."""
    if ctx.config.baseline == "learned":
        return sg(ctx.setup.critic.apply(critic_params, batch.obs))
    return ctx.baseline.value(batch.returns, None, baseline_state)


def loss(ctx: _Ctx, params, baseline_state, batch: Batch) -> tuple[Array, dict]:
    """−mean (R − b) ∇log π over complete samples − c_e H[π] (+ c_v ½ mean (V − R)²)."""
    dist = ctx.setup.actor.apply(params["actor"], batch.obs)
    advantage = batch.returns - baseline_values(ctx, params["critic"], baseline_state, batch)
    actor_losses, _ = jax.vmap(losses.policy_gradient_loss)(dist.log_prob(batch.action),
                                                            batch.log_prob, advantage)
    a_loss = masked_mean(actor_losses, batch.mask)
    entropy = jnp.mean(dist.entropy())
    total = a_loss - ctx.config.ent_coef * entropy
    metrics = {"actor_loss": a_loss, "entropy": entropy}
    if ctx.config.baseline == "learned":
        values = ctx.setup.critic.apply(params["critic"], batch.obs)
        v_loss = 0.5 * masked_mean((values - batch.returns) ** 2, batch.mask)
        total = total + ctx.config.vf_coef * v_loss
        metrics["value_loss"] = v_loss
    return total, metrics


def update(ctx: _Ctx, state: AgentState, key) -> tuple[AgentState, dict]:
    """One rollout, one gradient step, and the baseline's update with this batch's returns."""
    setup, config = ctx.setup, ctx.config
    env, transitions = on_policy.rollout(setup, config, state, key)
    returns, mask = reward_to_go(config, transitions)
    flat = on_policy.flatten
    batch = Batch(flat(on_policy.observe(config, state.obs_stats, transitions.obs)),
                  flat(transitions.action), flat(transitions.extras), flat(returns), flat(mask))
    learner, metrics = optim.gradient_step(
        ctx.opt, functools.partial(loss, ctx), optim.Learner(state.params, state.opt_state),
        state.extra, batch)
    # The moving average sees only complete returns: masked entries are filled with the mean of
    # the complete ones, which leaves the batch mean that the baseline averages unchanged.
    complete_mean = masked_mean(batch.returns, batch.mask)
    baseline_state = ctx.baseline.update(state.extra,
                                         jnp.where(batch.mask, batch.returns, complete_mean))
    # Per-sample gradients whose mean is this update's actor gradient: masked samples count 0
    # and the others are reweighted by B / #complete.
    weight = batch.mask / jnp.maximum(jnp.mean(batch.mask), 1.0 / batch.mask.size)
    b = baseline_values(ctx, state.params["critic"], state.extra, batch)
    diag = DiagInput(state.params["actor"], PolicyBatch(
        batch.obs, batch.action, batch.log_prob, weight * (batch.returns - b)), weight * b)
    state = AgentState(learner.params, learner.opt_state, env,
                       on_policy.updated_stats(config, state.obs_stats, transitions.obs), diag,
                       baseline_state)
    metrics.update(on_policy.episode_metrics(transitions))
    metrics["complete_fraction"] = jnp.mean(batch.mask)
    return state, metrics


def make_agent(config: ReinforceConfig, env, env_params) -> loop.Agent:
    """REINFORCE on ``env`` as a ``loop.Agent``."""
    on_policy.check_config(config)
    if config.baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {config.baseline!r}")
    setup = on_policy.make_setup(config, env, env_params)
    baseline = (gradest.baselines.moving_average(config.baseline_decay)
                if config.baseline == "moving_average" else gradest.baselines.none())
    num_steps = on_policy.sizes(config).num_updates
    opt = on_policy.make_optimizer(config, num_steps)
    return on_policy.make_agent("reinforce", setup, config, opt,
                                functools.partial(update, _Ctx(setup, config, opt, baseline)),
                                baseline.init())


def make_stages(config: ReinforceConfig, env, env_params) -> loop.Stages:
    """REINFORCE on ``env`` as resumable ``loop.Stages``."""
    return loop.make_stages(functools.partial(make_agent, env=env, env_params=env_params), config)


def make_train(config: ReinforceConfig, env, env_params):
    """``train(key, config=config) -> TrainOutput`` for REINFORCE on ``env``."""
    return loop.make_train(make_stages(config, env, env_params))
