"""Train an agent on a gymnax environment over several seeds at once.

    python -m experiments.train --agent=ppo --env=CartPole-v1 --num_seeds=8 \
        --total_steps=100000 --output_dir=/tmp/ppo_cartpole [--config.learning_rate=1e-3 ...]

All seeds train in one ``jax.jit(jax.vmap(train))`` call. The agent's config is its tuned
defaults for the environment (``experiments/configs/<agent>.py``) with ``--config.<field>=``
overrides. Writes to ``--output_dir``:

* ``metrics.json``: every logged metric, ``[num_seeds, num_logs]`` per name;
* ``learning_curve.png``: evaluation return (mean and min–max over seeds) and training return
  against env steps;
* ``summary.json``: agent, env, budget, final evaluation return per seed (the mean over
  ``eval_episodes`` ≥ 32 greedy episodes after the last update), compile and train seconds,
  env steps per second (all seeds together), and the config.

Bad input (an unknown agent or environment, an action space the agent does not support, a
non-positive budget) prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_dict, config_flags

from experiments import configs

MIN_EVAL_EPISODES = 32


def _override_fields() -> config_dict.ConfigDict:
    """Every field of every registered agent's config, unset: ``--config.<field>=`` sets it."""
    fields = {}
    for entry in configs.REGISTRY.values():
        for f in dataclasses.fields(entry.config_cls):
            fields[f.name] = config_dict.placeholder(type(f.default))
    return config_dict.ConfigDict(fields)


def check_config_names(argv: list[str]) -> None:
    """One-line error and exit 2 for ``--config.<name>`` naming no field of any agent's config
    (otherwise the flag parser fails with a traceback)."""
    known = set(_override_fields().keys())
    for arg in argv[1:]:
        if arg.startswith("--config."):
            name = arg[len("--config."):].split("=", 1)[0].split(".", 1)[0]
            if name not in known:
                print(f"error: --config.{name} is not a config field; known fields: "
                      f"{', '.join(sorted(known))}", file=sys.stderr)
                sys.exit(2)


# ml_collections parses --config.<name> when the flag is defined; check the names first.
if __name__ == "__main__":
    check_config_names(sys.argv)

_AGENT = flags.DEFINE_string("agent", "ppo", "agent name: one of the registered agents")
_ENV = flags.DEFINE_string("env", "CartPole-v1", "gymnax environment id")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 8, "seeds trained side by side (vmapped)")
_SEED = flags.DEFINE_integer("seed", 0, "base seed; seed i uses fold_in(key(seed), i)")
_TOTAL_STEPS = flags.DEFINE_integer("total_steps", None,
                                    "env steps per seed (default: the config's total_steps)")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "where to write metrics, plot, summary")
_QUIET = flags.DEFINE_bool("quiet", False, "no progress lines during training")
_CONFIG = config_flags.DEFINE_config_dict("config", _override_fields(),
                                          "overrides of the agent's config fields")


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


def make_config(agent: str, env_id: str, overrides: dict, total_steps, quiet: bool):
    """The agent's config dataclass for ``env_id`` with the command-line overrides applied."""
    if agent not in configs.REGISTRY:
        raise UsageError(f"unknown agent {agent!r}; choose one of {sorted(configs.REGISTRY)}")
    entry = configs.REGISTRY[agent]
    config = entry.get_config(env_id)
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in config:
            raise UsageError(f"--config.{name} is not a field of {agent}'s config")
        config[name] = value
    if total_steps is not None:
        config.total_steps = total_steps
    if config.total_steps <= 0:
        raise UsageError(f"the budget must be positive, got total_steps={config.total_steps}")
    if quiet:
        config.verbose = False
    if config.eval_episodes < MIN_EVAL_EPISODES:
        raise UsageError(f"eval_episodes must be ≥ {MIN_EVAL_EPISODES} for the final return, "
                         f"got {config.eval_episodes}")
    return entry, configs.build(entry, config)


def make_env(entry: configs.AgentEntry, agent: str, env_id: str):
    """gymnax environment and params; ``UsageError`` if unknown or unsupported by the agent."""
    import gymnax
    from agents import rollout

    if env_id not in gymnax.registered_envs:
        raise UsageError(f"unknown environment {env_id!r}; gymnax has {', '.join(gymnax.registered_envs)}")
    env, env_params = gymnax.make(env_id)
    try:
        spec = rollout.action_spec(env, env_params)
    except ValueError as e:
        raise UsageError(f"{env_id}: {e}") from None
    if (spec.discrete and not entry.discrete) or (not spec.discrete and not entry.continuous):
        kind = "discrete" if spec.discrete else "continuous"
        raise UsageError(f"{agent} does not support {env_id}'s {kind} action space")
    return env, env_params


def train_seeds(entry: configs.AgentEntry, config, env, env_params, num_seeds: int, seed: int):
    """Compiles and runs all seeds; returns the output (leading seed axis) and the timings.

    One seed runs under plain ``jax.jit``: a batch of one under ``vmap`` compiles slower.
    """
    train_one = entry.make_train(config, env, env_params)
    base = jax.random.key(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(np.arange(num_seeds))
    if num_seeds == 1:
        train = jax.jit(lambda k: jax.tree.map(lambda x: x[None], train_one(k[0])))
    else:
        train = jax.jit(jax.vmap(train_one))
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    return out, compile_s, time.perf_counter() - start


def plot(metrics: dict, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = metrics["env_steps"][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, color in (("eval_return", "C0"), ("train_return", "C1")):
        values = metrics[name]
        ax.plot(steps, np.nanmean(values, 0), color=color, label=f"{name.replace('_', ' ')} (mean)")
        ax.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0), color=color, alpha=0.2)
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("episode return")
    ax.set_title(f"{title} ({values.shape[0]} seeds; band = min–max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(agent: str, env_id: str, num_seeds: int, seed: int, total_steps, output_dir: str,
        overrides: dict, quiet: bool = False) -> dict:
    """Trains, writes metrics, plot and summary to ``output_dir``; returns the summary."""
    if num_seeds < 1:
        raise UsageError(f"num_seeds must be positive, got {num_seeds}")
    entry, config = make_config(agent, env_id, overrides, total_steps, quiet)
    env, env_params = make_env(entry, agent, env_id)
    try:
        out, compile_s, train_s = train_seeds(entry, config, env, env_params, num_seeds, seed)
    except ValueError as e:   # sizes the agent rejects when it is built
        raise UsageError(str(e)) from None
    metrics = {k: np.asarray(v) for k, v in out.metrics.items() if k != "eval_returns"}
    final = metrics["eval_return"][:, -1]
    steps_per_seed = int(metrics["env_steps"][0, -1])
    summary = {
        "agent": agent, "env": env_id, "total_steps": steps_per_seed,
        "requested_total_steps": config.total_steps, "num_seeds": num_seeds,
        "final_return_per_seed": final.tolist(), "final_return_mean": float(final.mean()),
        "final_return_std": float(final.std()), "eval_episodes": config.eval_episodes,
        "compile_seconds": compile_s, "train_seconds": train_s,
        "env_steps_per_second": steps_per_seed * num_seeds / train_s,
        "device": str(jax.devices()[0]),
        "config": {k: list(v) if isinstance(v, tuple) else v
                   for k, v in dataclasses.asdict(config).items()},
    }
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump({k: v.tolist() for k, v in metrics.items()}, f)
    plot(metrics, os.path.join(output_dir, "learning_curve.png"), f"{agent} on {env_id}")
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"{agent} on {env_id}: final return {summary['final_return_mean']:.1f} "
          f"(per seed {np.round(final, 1).tolist()}), compile {compile_s:.1f}s, "
          f"train {train_s:.1f}s, {summary['env_steps_per_second']:,.0f} env steps/s")
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if _OUTPUT_DIR.value is None:
        print("error: --output_dir is required", file=sys.stderr)
        sys.exit(2)
    try:
        run(_AGENT.value, _ENV.value, _NUM_SEEDS.value, _SEED.value, _TOTAL_STEPS.value,
            _OUTPUT_DIR.value, _CONFIG.value.to_dict(), _QUIET.value)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
