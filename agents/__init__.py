"""Functional RL agents on gymnax built on gradest's estimators (DESIGN.md §4).

Every agent is a ``loop.Agent`` (init, update, evaluate, actor-gradient diagnostics) run by the
one loop of ``agents.loop``, and exposes ``make_stages(config, env, env_params, ...)`` (the run as
resumable ``loop.Stages``) and ``make_train(config, env, env_params, ...) -> train(key,
config=config)``, pure and built from ``lax.scan``, so ``jax.jit(jax.vmap(train))(keys)`` trains
many seeds at once; ``stack_configs`` batches configs that differ in traced hyperparameters for
the same ``vmap``. SAC also takes its actor's ``gradest.GradientEstimator`` and baseline as
values. ``agents.jit`` is ``jax.jit``, with XLA CPU options only where the launcher opts in
(``agents._jit``). ``agents.runner`` trains the ``Stages`` of any agent over many seeds,
devices and processes, with checkpoints.
"""

from agents import (actor_critic, config, diagnostics, loop, losses, networks, on_policy, optim,
                    ppo, reinforce, replay, returns, rollout, sac)
from agents._jit import compiler_options, jit
from agents.actor_critic import ActorCriticConfig
from agents.config import CommonConfig, prng_key, stack_configs
from agents.loop import Agent, Stages, TrainOutput, finish_metrics
from agents.losses import policy_gradient_loss
from agents.ppo import PPOConfig
from agents.reinforce import ReinforceConfig
from agents.sac import SACConfig

__all__ = [
    "actor_critic", "config", "diagnostics", "loop", "losses", "networks", "on_policy", "optim",
    "ppo", "reinforce", "replay", "returns", "rollout", "sac",
    "compiler_options", "jit", "prng_key",
    "Agent", "Stages", "TrainOutput", "finish_metrics", "CommonConfig", "stack_configs",
    "policy_gradient_loss",
    "ActorCriticConfig", "PPOConfig", "ReinforceConfig", "SACConfig",
]
