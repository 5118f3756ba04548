"""The config fields every on-policy agent shares, and the rules for passing configs to ``train``.

Configs are ``flax.struct`` dataclasses: static fields (sizes, counts, choices) are baked into the
compiled program; the others are traced leaves, so configs that differ only in them can be
stacked (``stack_configs``) and ``vmap``-ed: ``jax.vmap(train)(keys, stacked_configs)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from agents import networks, validation


def prng_key(seed: int) -> jax.Array:
    """The root key of a training run: ``jax.random.key(seed)``, JAX's default implementation."""
    return jax.random.key(seed)


def static(default):
    """A config field fixed at trace time (a size, a count, a choice): not a pytree leaf."""
    return struct.field(pytree_node=False, default=default)


@struct.dataclass
class CommonConfig:
    """Fields every on-policy agent has. Static fields shape the computation; the others are
    traced leaves, so a batch of configs that differ only in them can be ``vmap``-ed."""

    # --- static ---
    num_envs: int = static(4)               # environments stepped side by side
    num_steps: int = static(128)            # steps per environment per rollout (one update)
    total_steps: int = static(500_000)      # env-step budget; rounded down to whole updates
    log_interval: int = static(50)          # updates between evaluations / diagnostics / prints
    eval_episodes: int = static(32)         # greedy episodes per evaluation
    eval_every: int = static(1)             # log intervals per evaluation (the last always)
    actor_widths: Sequence[int] = static((64, 64))   # hidden layer widths of the actor
    critic_widths: Sequence[int] = static((64, 64))  # hidden layer widths of the critic
    activation: str = static("tanh")        # hidden activation (networks.ACTIVATIONS)
    state_dependent_std: bool = static(False)  # Gaussian actors: σ(s) head or a free log σ
    log_std_init: float = static(0.0)       # Gaussian actors: initial log σ
    normalize_obs: bool = static(False)     # running mean/std observation normalization
    anneal_lr: bool = static(True)          # learning rate decays linearly to 0
    clip_per_network: bool = static(False)  # clip actor and critic gradients separately
    verbose: bool = static(True)            # print progress from inside jit once per log
    # --- traced ---
    learning_rate: float = 2.5e-4           # Adam step size (initial, if annealed)
    gamma: float = 0.99                     # discount γ
    ent_coef: float = 0.01                  # entropy bonus coefficient
    max_grad_norm: float = 0.5              # global-norm gradient clip
    reward_scale: float = 1.0               # rewards are multiplied by this before learning

    def field_checks(self) -> dict[str, validation.Check]:
        """Field name → its check (``agents.validation``); each agent's config adds its own."""
        v = validation
        return {
            "num_envs": v.positive_int, "num_steps": v.positive_int,
            "total_steps": v.positive_int, "log_interval": v.positive_int,
            "eval_episodes": v.positive_int, "eval_every": v.positive_int,
            "actor_widths": v.widths, "critic_widths": v.widths,
            "activation": v.one_of(networks.ACTIVATIONS),
            "state_dependent_std": v.boolean, "log_std_init": v.finite,
            "normalize_obs": v.boolean, "anneal_lr": v.boolean, "clip_per_network": v.boolean,
            "verbose": v.boolean, "learning_rate": v.positive, "gamma": v.unit_interval,
            "ent_coef": v.non_negative, "max_grad_norm": v.positive_or_inf,
            "reward_scale": v.positive,
        }

    def validate(self) -> None:
        """``ValueError`` in one line for a value no run can use (every field, and a budget of
        at least one update), before anything is traced."""
        from agents import loop  # loop imports this module

        validation.check_fields(self, self.field_checks())
        loop.loop_sizes(self.total_steps, self.num_envs * self.num_steps, self.log_interval)


def check_static(config: Any, reference: Any) -> None:
    """A config passed to ``train`` may differ from the one the agent was built with only in its
    traced fields (sizes and choices are baked into the compiled program)."""
    if jax.tree.structure(config) != jax.tree.structure(reference):
        raise ValueError("train() got a config whose static fields differ from make_train's; "
                         "only traced fields (learning rate, γ, coefficients) may change")


def stack_configs(configs: Sequence[Any]) -> Any:
    """One config whose traced fields carry a leading axis, for ``jax.vmap(train)(keys, config)``
    over hyperparameters (all static fields must agree)."""
    for c in configs[1:]:
        check_static(c, configs[0])
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *configs)
