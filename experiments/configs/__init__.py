"""Agent registry and per-agent, per-environment configurations for ``experiments.train``.

Each agent has a module here whose ``get_config(env_id) -> ml_collections.ConfigDict`` returns
its defaults with that environment's tuned values applied (a comment per field). ``REGISTRY``
maps ``--agent`` names to what ``experiments.train`` needs; add an agent with ``register``:

    register("sac", AgentEntry(sac_config.make_train, sac_config.SACRunConfig,
                               sac_config.get_config, discrete=True, continuous=True))

``make_config``, ``make_env`` and ``make_stages`` build an agent by name for an environment id,
as the command line and the experiments do; each raises ``ValueError`` with one line for input
no run can use, before anything compiles.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import ml_collections

import agents
import agents.envs

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
      make_stages: ``make_stages(config, env, env_params) -> agents.Stages``: the same run as
        resumable pieces (``agents.runner`` shards and checkpoints them).
      tuned_envs: the environments ``get_config`` has tuned values for.
      choices_for: ``choices_for(config, discrete) -> (field, usable values)``: where building
        the agent for an action space can fail on a choice (SAC's actor estimator), the
        choices that fit it, for the error message; ``None`` where none can fail.
    """

    make_train: Callable[..., Callable]
    config_cls: type
    get_config: Callable[[str], ml_collections.ConfigDict]
    discrete: bool
    continuous: bool
    make_stages: Callable[..., Any] | None = None
    tuned_envs: tuple[str, ...] = ()
    choices_for: Callable[[Any, bool], tuple[str, list[str]]] | None = None


REGISTRY: dict[str, AgentEntry] = {}


def register(name: str, entry: AgentEntry) -> None:
    if name in REGISTRY:
        raise ValueError(f"agent {name!r} is already registered")
    REGISTRY[name] = entry


register("ppo", AgentEntry(agents.ppo.make_train, agents.ppo.PPOConfig, ppo_config.get_config,
                           discrete=True, continuous=True, make_stages=agents.ppo.make_stages,
                           tuned_envs=tuple(ppo_config.TUNED)))
register("reinforce", AgentEntry(agents.reinforce.make_train, agents.reinforce.ReinforceConfig,
                                 reinforce_config.get_config, discrete=True, continuous=True,
                                 make_stages=agents.reinforce.make_stages,
                                 tuned_envs=tuple(reinforce_config.TUNED)))
register("actor_critic", AgentEntry(agents.actor_critic.make_train,
                                    agents.actor_critic.ActorCriticConfig,
                                    actor_critic_config.get_config, discrete=True, continuous=True,
                                    make_stages=agents.actor_critic.make_stages,
                                    tuned_envs=tuple(actor_critic_config.TUNED)))
register("sac", AgentEntry(sac_config.make_train, sac_config.SACRunConfig, sac_config.get_config,
                           discrete=True, continuous=True, make_stages=sac_config.make_stages,
                           tuned_envs=tuple(sac_config.TUNED),
                           choices_for=sac_config.usable_estimators))


def build(entry: AgentEntry, config: ml_collections.ConfigDict) -> Any:
    """The agent's config dataclass from a ConfigDict (sequences become tuples: static fields
    must be hashable)."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.to_dict().items()}
    return entry.config_cls(**values)


def entry_of(agent: str) -> AgentEntry:
    """The registered agent ``agent``; ``ValueError`` listing the registered ones."""
    if agent not in REGISTRY:
        raise ValueError(f"unknown agent {agent!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[agent]


def make_config(agent: str, env_id: str, overrides: dict | None = None,
                total_steps: int | None = None, quiet: bool = False) -> tuple[AgentEntry, Any]:
    """(entry, config) of ``agent`` for ``env_id``: the tuned config (the defaults where there is
    none) with ``overrides`` (``None`` values ignored), ``total_steps`` and, with ``quiet``, no
    progress lines; validated (the config's own ``validate()``)."""
    entry = entry_of(agent)
    config = entry.get_config(env_id)
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in config:
            raise ValueError(f"--config.{name} is not a field of {agent}'s config; its fields: "
                             f"{', '.join(sorted(config))}")
        try:
            config[name] = value
        except TypeError as e:   # ml_collections keeps each field's type
            raise ValueError(f"--config.{name}={value!r}: {e}") from None
    if total_steps is not None:
        config.total_steps = total_steps
    if quiet:
        config.verbose = False
    try:
        built = build(entry, config)
    except TypeError as e:
        raise ValueError(f"bad config for {agent}: {e}") from None
    built.validate()
    return entry, built


def make_env(entry: AgentEntry, agent: str, env_id: str):
    """``(env, env_params)`` of ``env_id`` as the agents take it (``agents.envs.make``);
    ``ValueError`` if unknown, not buildable, or of an action space the agent does not
    support."""
    env, env_params = agents.envs.make(env_id)
    spec = agents.rollout.action_spec(env, env_params)
    if (spec.discrete and not entry.discrete) or (not spec.discrete and not entry.continuous):
        kind = "discrete" if spec.discrete else "continuous"
        raise ValueError(f"{agent} does not support {env_id}'s {kind} action space")
    return env, env_params


def make_stages(entry: AgentEntry, config, env, env_params) -> agents.Stages:
    """The agent's resumable stages, nothing compiled yet. What the agent rejects when it is
    built (sizes that do not fit together, an estimator that does not fit the action space) is
    a ``ValueError`` with one line; a rejected choice lists the values that fit."""
    try:
        return entry.make_stages(config, env, env_params)
    except ValueError as e:   # gradest.EstimatorError is a ValueError
        message = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if entry.choices_for is not None:
            discrete = agents.rollout.action_spec(env, env_params).discrete
            field, usable = entry.choices_for(config, discrete)
            if getattr(config, field) not in usable:
                message += (f"; for {'discrete' if discrete else 'continuous'} actions choose "
                            f"--config.{field} from {usable}")
        raise ValueError(message) from None


def config_dict_of(config) -> dict:
    """The config as JSON-ready builtins (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}
