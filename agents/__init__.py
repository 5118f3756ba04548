"""Functional RL agents on gymnax built on gradest's estimators (DESIGN.md §4).

Every agent exposes ``make_train(config, env, env_params) -> train(key, config=config)``, pure and
built from ``lax.scan``, so ``jax.jit(jax.vmap(train))(keys)`` trains many seeds at once;
``stack_configs`` batches configs that differ in traced hyperparameters for the same ``vmap``.
``agents.jit`` is ``jax.jit`` with the compiler options the experiments build agents with
(``agents._jit``). Each agent also exposes its run as resumable ``Stages``, which
``agents.runner`` trains over many seeds, devices and processes, with checkpoints.
"""

from agents import actor_critic, networks, ppo, reinforce, returns, rollout
from agents._jit import compiler_options, jit
from agents._common import (CommonConfig, Stages, TrainOutput, finish_metrics,
                            policy_gradient_loss, prng_key, stack_configs)
from agents.actor_critic import ActorCriticConfig
from agents.ppo import PPOConfig
from agents.reinforce import ReinforceConfig

__all__ = [
    "actor_critic", "networks", "ppo", "reinforce", "returns", "rollout",
    "compiler_options", "jit", "CommonConfig", "Stages", "TrainOutput", "finish_metrics",
    "policy_gradient_loss", "prng_key", "stack_configs",
    "ActorCriticConfig", "PPOConfig", "ReinforceConfig",
]
