"""Agent registry and per-agent, per-environment configurations for ``experiments.train``.

Each agent has a module here whose ``get_config(env_id) -> ml_collections.ConfigDict`` returns
its defaults with that environment's tuned values applied (a comment per field). ``REGISTRY``
maps ``--agent`` names to what ``experiments.train`` needs; add an agent with ``register``:

    register("sac", AgentEntry(sac_config.make_train, sac_config.SACRunConfig,
                               sac_config.get_config, discrete=True, continuous=True))
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import ml_collections

import agents.actor_critic
import agents.ppo
import agents.reinforce
from experiments.configs import actor_critic as actor_critic_config
from experiments.configs import ppo as ppo_config
from experiments.configs import reinforce as reinforce_config
from experiments.configs import sac as sac_config


class AgentEntry(NamedTuple):
    """How to build and configure one agent.

    Attributes:
      make_train: ``make_train(config, env, env_params) -> train(key)``.
      config_cls: the agent's config dataclass (static and traced fields).
      get_config: ``get_config(env_id) -> ConfigDict`` of tuned defaults.
      discrete, continuous: which action spaces the agent supports.
      make_stages: ``make_stages(config, env, env_params) -> agents.loop.Stages``: the same
        run as resumable pieces (``experiments.train`` shards and checkpoints them).
    """

    make_train: Callable[..., Callable]
    config_cls: type
    get_config: Callable[[str], ml_collections.ConfigDict]
    discrete: bool
    continuous: bool
    make_stages: Callable[..., Any] | None = None


REGISTRY: dict[str, AgentEntry] = {}


def register(name: str, entry: AgentEntry) -> None:
    if name in REGISTRY:
        raise ValueError(f"agent {name!r} is already registered")
    REGISTRY[name] = entry


register("ppo", AgentEntry(agents.ppo.make_train, agents.ppo.PPOConfig, ppo_config.get_config,
                           discrete=True, continuous=True, make_stages=agents.ppo.make_stages))
register("reinforce", AgentEntry(agents.reinforce.make_train, agents.reinforce.ReinforceConfig,
                                 reinforce_config.get_config, discrete=True, continuous=True,
                                 make_stages=agents.reinforce.make_stages))
register("actor_critic", AgentEntry(agents.actor_critic.make_train,
                                    agents.actor_critic.ActorCriticConfig,
                                    actor_critic_config.get_config, discrete=True, continuous=True,
                                    make_stages=agents.actor_critic.make_stages))
register("sac", AgentEntry(sac_config.make_train, sac_config.SACRunConfig, sac_config.get_config,
                           discrete=True, continuous=True, make_stages=sac_config.make_stages))


def build(entry: AgentEntry, config: ml_collections.ConfigDict) -> Any:
    """The agent's config dataclass from a ConfigDict (sequences become tuples: static fields
    must be hashable)."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.to_dict().items()}
    return entry.config_cls(**values)
