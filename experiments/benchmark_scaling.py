r"""Scaling suite of the benchmark: env steps per second against the number of seeds and devices.

    python -m experiments.benchmark --suite=scaling --output_dir=/tmp/bench
    python -m experiments.benchmark_scaling --output_dir=/tmp/bench [--quick] \
        [--seed_counts=1,4,16,64,256] [--ppo_steps=32768] [--sac_steps=512] [--repeats=1]

Two agents, each trained by ``agents.runner.train_seeds`` (one seed under plain ``jax.jit``,
several under ``jax.jit(jax.vmap(...))``, sharded over devices where ``train_seeds`` takes
``devices=``), so the numbers are those ``python -m experiments.train`` runs at:

* PPO on CartPole-v1 with PureJaxRL's configuration (the agents suite's: 4 envs × 128 steps,
  4 epochs × 4 minibatches, 2×64 tanh, lr 2.5e-4 annealed, an evaluation every 61 updates);
* SAC on Pendulum-v1 with ``experiments/configs/sac.py``'s tuned values (one env, one gradient
  step of batch 256 per env step, warm-up included in the budget).

The budget per seed is fixed (``--ppo_steps``, ``--sac_steps``); each seed count compiles anew.
Compilation is timed apart from the run; the run time includes the periodic greedy evaluations
(as in ``experiments.train``). Env steps per second count training steps of all seeds together
("total") and divided by the number of seeds ("per seed").

With more than one device (``jax.device_count() > 1``), the seed sweep spreads each seed count
over as many devices as divide it, and a second sweep runs a fixed seed count over 1, 2, 4, …
devices. It needs ``train_seeds(..., devices=...)``; without it the device sweep is skipped with
a note. On a CPU host split into several devices (``XLA_FLAGS=--xla_force_host_platform_device_
count=N``) the devices share the same cores, so that sweep checks the code path, not a speed-up.

Writes ``scaling_benchmark.json`` (device info, jax version, configs, one row per measurement)
and ``scaling.png`` (env steps/s against seeds, log-log, one line per agent; a second panel
against devices where swept). Speed is reported, never asserted.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import platform
import time

from absl import app, flags
import jax
import matplotlib.pyplot as plt
import numpy as np

import agents
from agents import ppo, runner
from experiments import _common, configs

AGENTS = {"ppo": "CartPole-v1", "sac": "Pendulum-v1"}
_DEFAULT_OUTPUT_DIR = "results/benchmark"

# PureJaxRL's CartPole configuration (the PPOConfig defaults; the same fields as
# ``experiments.benchmark_agents.PUREJAXRL_CARTPOLE``, which a test keeps in step). Given as
# overrides, they replace the tuned CartPole values of experiments/configs/ppo.py.
_PUREJAXRL = ppo.PPOConfig(log_interval=61, eval_episodes=128, eval_every=16, verbose=False)
PPO_OVERRIDES = {f.name: getattr(_PUREJAXRL, f.name) for f in dataclasses.fields(_PUREJAXRL)
                 if f.name not in ("total_steps", "verbose")}


@dataclasses.dataclass(frozen=True)
class Sizes:
    seed_counts: tuple[int, ...]
    ppo_steps: int  # env steps per seed (PPO runs whole updates of 512 steps)
    sac_steps: int  # env steps per seed, the 256 warm-up steps included
    repeats: int  # timed runs per point (each compiles anew); the fastest is reported


# Each point compiles anew (10–35 s on two shared CPU cores), and SAC's cost is its gradient
# steps (one of batch 256 per env step, ~1.7 ms per seed on those cores whatever the number of
# seeds): 256 warm-up steps plus 256 updates per seed keep 256 seeds at about two minutes.
FULL = Sizes(seed_counts=(1, 4, 16, 64, 256), ppo_steps=32_768, sac_steps=512, repeats=1)
QUICK = Sizes(seed_counts=(1, 16), ppo_steps=16_384, sac_steps=512, repeats=1)


def device_info() -> dict:
    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
            "devices": [str(d) for d in devices], "host_cpu_count": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__}


def supports_devices() -> bool:
    """Whether ``agents.runner.train_seeds`` takes a ``devices=`` argument."""
    return "devices" in inspect.signature(runner.train_seeds).parameters


def default_device_counts(total: int) -> list[int]:
    """1, 2, 4, … up to ``total``, and ``total`` itself."""
    counts, d = [], 1
    while d < total:
        counts.append(d)
        d *= 2
    return counts + [total]


def make_agent(agent: str, steps_per_seed: int, overrides: dict | None = None):
    """(entry, config, env, env_params) as ``experiments.train`` builds them, printing nothing."""
    env_id = AGENTS[agent]
    base = PPO_OVERRIDES if agent == "ppo" else {}
    entry, config = configs.make_config(agent, env_id, {**base, **(overrides or {})},
                                        steps_per_seed, quiet=True)
    env, env_params = configs.make_env(entry, agent, env_id)
    return entry, config, env, env_params


def time_point(built, num_seeds: int, num_devices: int | None, repeats: int, seed: int) -> dict:
    """Compile and run times of ``train_seeds`` at ``num_seeds`` seeds over the first
    ``num_devices`` devices (``None``: ``train_seeds``'s own placement, one device before it
    could shard)."""
    entry, config, env, env_params = built
    kwargs = {} if num_devices is None else {"devices": jax.devices()[:num_devices]}
    compile_s, run_s = [], []
    for _ in range(repeats):
        out, c, r = runner.train_seeds(configs.make_stages(entry, config, env, env_params),
                                       num_seeds, seed, compiler_options=agents.compiler_options(),
                                       **kwargs)
        compile_s.append(c)
        run_s.append(r)
    steps_per_seed = int(np.asarray(out.metrics["env_steps"])[0, -1])
    final = np.asarray(out.metrics["eval_return"])[:, -1]
    best = min(run_s)
    total = steps_per_seed * num_seeds / best
    return {"num_seeds": num_seeds, "num_devices": 1 if num_devices is None else num_devices,
            "compile_s": min(compile_s), "run_s": best, "compile_s_all": compile_s,
            "run_s_all": run_s, "env_steps_per_seed": steps_per_seed,
            "env_steps": steps_per_seed * num_seeds, "env_steps_per_second": total,
            "env_steps_per_second_per_seed": total / num_seeds,
            "final_return_mean": float(np.mean(final))}


def _print_header() -> None:
    print(f"{'agent':>5} {'env':>12} {'sweep':>7} {'seeds':>5} {'devices':>7} {'compile s':>9} {'run s':>8} "
          f"{'env steps/s':>12} {'per seed':>10} {'return':>8}", flush=True)


def _print_row(row: dict) -> None:
    print(f"{row['agent']:>5} {row['env']:>12} {row['sweep']:>7} {row['num_seeds']:>5} {row['num_devices']:>7} "
          f"{row['compile_s']:>9.1f} {row['run_s']:>8.2f} {row['env_steps_per_second']:>12,.0f} "
          f"{row['env_steps_per_second_per_seed']:>10,.0f} {row['final_return_mean']:>8.1f}",
          flush=True)


def plot(result: dict, path: str) -> None:
    """Env steps/s against seeds (log-log; solid: all seeds, dashed: per seed) and, where swept,
    against devices."""
    swept = bool(result["device_rows"])
    fig, axes = plt.subplots(1, 2 if swept else 1, figsize=(11 if swept else 6, 4), squeeze=False)
    panels = [(axes[0, 0], result["seed_rows"], "num_seeds", "seeds")]
    if swept:
        panels.append((axes[0, 1], result["device_rows"], "num_devices",
                       f"devices ({result['device_sweep']['num_seeds']} seeds)"))
    for ax, rows, x_key, x_label in panels:
        for i, agent in enumerate(result["agents"]):
            mine = [r for r in rows if r["agent"] == agent]
            if not mine:
                continue
            x = [r[x_key] for r in mine]
            label = f"{agent} on {AGENTS[agent]}"
            ax.plot(x, [r["env_steps_per_second"] for r in mine], "o-", color=f"C{i}",
                    label=f"{label}, all seeds")
            ax.plot(x, [r["env_steps_per_second_per_seed"] for r in mine], "s--", color=f"C{i}",
                    alpha=0.6, label=f"{label}, per seed")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel("env steps / s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    info = result["device"]
    fig.suptitle(f"Training throughput, {info['platform']} ({info['device_kind']}, "
                 f"{info['device_count']} device(s)), jax {info['jax']}", fontsize=10)
    _common.save_figure(fig, path)


def _checked_seed_counts(seed_counts, agents) -> list[int]:
    """The seed counts, sorted without repeats; ``ValueError`` for a count below 1 or an agent
    not in ``AGENTS``."""
    counts = sorted({int(n) for n in seed_counts})
    if not counts or counts[0] < 1:
        raise ValueError(f"seed counts must be positive, got {counts}")
    unknown = set(agents) - set(AGENTS)
    if unknown:
        raise ValueError(f"unknown agents {sorted(unknown)}; choose from {sorted(AGENTS)}")
    return counts


def plan_device_sweep(device_count: int, sharding: bool, device_counts, wanted_seeds: int
                      ) -> tuple[list[int], dict]:
    """(device counts to time, the sweep's description for the JSON) of the device sweep.

    ``device_counts``: as asked (``None``: 1, 2, 4, … up to ``device_count`` when there is more
    than one device), kept where between 1 and ``device_count``. The sweep runs where two or more
    remain and ``train_seeds`` can shard, at ``wanted_seeds`` rounded down to a multiple of every
    device count (at least one such multiple); otherwise no count is timed, and the description
    says why.
    """
    if device_counts is None:
        device_counts = default_device_counts(device_count) if device_count > 1 else []
    device_counts = sorted({int(d) for d in device_counts if 1 <= int(d) <= device_count})
    sweep = {"device_counts": device_counts, "num_seeds": None, "status": "not run",
             "note": "one device" if device_count == 1 else ""}
    if len(device_counts) < 2:
        return [], sweep
    if not sharding:
        sweep.update(status="skipped", note="agents.runner.train_seeds takes no devices= "
                     "argument: every seed count ran on one device")
        return [], sweep
    lcm = math.lcm(*device_counts)
    sweep.update(status="run", num_seeds=max(lcm, wanted_seeds // lcm * lcm), note="")
    return device_counts, sweep


def seed_sweep_devices(num_seeds: int, device_count: int, sharding: bool) -> int | None:
    """Devices for ``num_seeds`` seeds in the seed sweep: all that divide the seeds evenly (1 seed:
    one device, under plain jit), or ``None`` (``train_seeds``'s own placement) where there is
    one device or ``train_seeds`` cannot shard."""
    if not sharding or device_count == 1:
        return None
    return max(d for d in default_device_counts(device_count) if num_seeds % d == 0)


def _timed_row(agent: str, sweep: str, built, num_seeds: int, num_devices: int | None,
               repeats: int, seed: int) -> dict:
    """One row of the table (``time_point`` with the agent, its env and the sweep), printed."""
    row = {"agent": agent, "env": AGENTS[agent], "sweep": sweep,
           **time_point(built, num_seeds, num_devices, repeats, seed)}
    _print_row(row)
    return row


def run_scaling_suite(output_dir: str, seed_counts=FULL.seed_counts, device_counts=None, *,
                      ppo_steps: int = FULL.ppo_steps, sac_steps: int = FULL.sac_steps,
                      repeats: int = FULL.repeats, seed: int = 0, agents=tuple(AGENTS),
                      device_sweep_seeds: int | None = None,
                      overrides: dict[str, dict] | None = None) -> dict:
    """Times each agent at each seed count (and device count), prints a table, writes
    ``scaling_benchmark.json`` and ``scaling.png`` to ``output_dir``; returns the result.

    Args:
      seed_counts: seeds trained side by side.
      device_counts: devices for the device sweep; ``None``: 1, 2, 4, … up to
        ``jax.device_count()`` when there is more than one device, else no sweep.
      ppo_steps, sac_steps: env steps per seed.
      repeats: timed runs per point (each compiles anew; the fastest of each is reported).
      agents: a subset of ``AGENTS``.
      device_sweep_seeds: seeds in the device sweep (rounded down to a multiple of every device
        count); default the largest seed count.
      overrides: per agent, config overrides on top of the suite's (e.g. tiny networks in tests).
    """
    seed_counts = _checked_seed_counts(seed_counts, agents)
    overrides = overrides or {}
    info = device_info()
    sharding = supports_devices()
    device_counts, sweep = plan_device_sweep(info["device_count"], sharding, device_counts,
                                             device_sweep_seeds or max(seed_counts))
    progress = _common.Progress("scaling")
    budgets = {"ppo": ppo_steps, "sac": sac_steps}
    built = {a: make_agent(a, budgets[a], overrides.get(a)) for a in agents}
    print(f"{info['platform']} ({info['device_kind']}), {info['device_count']} device(s), "
          f"jax {info['jax']}, {info['host_cpu_count']} host CPUs; env steps per seed: "
          + ", ".join(f"{a} {built[a][1].total_steps:,}" for a in agents), flush=True)
    if sweep["status"] == "skipped":
        print(f"note: device sweep skipped: {sweep['note']}", flush=True)
    seed_rows, device_rows = [], []
    _print_header()
    for agent in agents:
        for n in seed_counts:
            devices = seed_sweep_devices(n, info["device_count"], sharding)
            seed_rows.append(_timed_row(agent, "seeds", built[agent], n, devices, repeats, seed))
        device_rows += [_timed_row(agent, "devices", built[agent], sweep["num_seeds"], d, repeats,
                                   seed) for d in device_counts]
    progress(f"done ({len(seed_rows)} seed points, {len(device_rows)} device points)")
    if sweep["status"] == "run" and info["platform"] == "cpu":
        sweep["note"] = "CPU devices share the host's cores: the sweep checks the code path"
    result = {
        "suite": "scaling", "device": info, "jax": jax.__version__,
        "train_seeds_takes_devices": sharding, "agents": list(agents),
        "envs": {a: AGENTS[a] for a in agents},
        "sizes": {"seed_counts": seed_counts, "ppo_steps": ppo_steps, "sac_steps": sac_steps,
                  "repeats": repeats, "seed": seed},
        "config": {a: dataclasses.asdict(built[a][1]) for a in agents},
        "device_sweep": sweep, "seed_rows": seed_rows, "device_rows": device_rows,
        "wall_s": progress.elapsed(),
    }
    os.makedirs(output_dir, exist_ok=True)
    _common.write_json(os.path.join(output_dir, "scaling_benchmark.json"), result)
    plot(result, os.path.join(output_dir, "scaling.png"))
    print(f"wrote {os.path.join(output_dir, 'scaling_benchmark.json')} and scaling.png", flush=True)
    return result


def sizes_from_flags(quick: bool, seed_counts, ppo_steps, sac_steps, repeats) -> Sizes:
    """The quick or full preset with the flags that were given (``None``: the preset's)."""
    base = QUICK if quick else FULL
    given = {"seed_counts": tuple(int(s) for s in seed_counts) if seed_counts else None,
             "ppo_steps": ppo_steps, "sac_steps": sac_steps, "repeats": repeats}
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


def _define_flag(define, name: str, *args) -> None:
    # Reuses a flag an imported module has already defined (experiments.benchmark defines its
    # own --output_dir and --seed before it imports this module).
    if name not in flags.FLAGS:
        define(name, *args)


def _define_flags() -> None:
    _define_flag(flags.DEFINE_string, "output_dir", _DEFAULT_OUTPUT_DIR, "Where the JSON and PNG go.")
    _define_flag(flags.DEFINE_integer, "seed", 0, "PRNG seed.")
    flags.DEFINE_bool("quick", False, f"Quick sizes: {QUICK}.")
    flags.DEFINE_list("seed_counts", None, f"Seed counts (default {list(FULL.seed_counts)}, "
                      f"{list(QUICK.seed_counts)} with --quick).")
    flags.DEFINE_list("device_counts", None,
                      "Device counts of the device sweep (default 1, 2, 4, … up to the number "
                      "of devices when there is more than one).")
    flags.DEFINE_integer("ppo_steps", None, f"PPO env steps per seed (default {FULL.ppo_steps}, "
                         f"{QUICK.ppo_steps} with --quick).")
    flags.DEFINE_integer("sac_steps", None, f"SAC env steps per seed, warm-up included (default "
                         f"{FULL.sac_steps}, {QUICK.sac_steps} with --quick).")
    flags.DEFINE_integer("repeats", None, "Timed runs per point, each compiling anew; the "
                         f"fastest is reported (default {FULL.repeats}).")
    flags.DEFINE_list("agents", list(AGENTS), "Agents to time: ppo (CartPole-v1), sac (Pendulum-v1).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    sizes = sizes_from_flags(f.quick, f.seed_counts, f.ppo_steps, f.sac_steps, f.repeats)
    device_counts = [int(d) for d in f.device_counts] if f.device_counts else None
    start = time.perf_counter()
    run_scaling_suite(f.output_dir or _DEFAULT_OUTPUT_DIR, sizes.seed_counts, device_counts, ppo_steps=sizes.ppo_steps,
                      sac_steps=sizes.sac_steps, repeats=sizes.repeats, seed=f.seed,
                      agents=tuple(f.agents))
    print(f"scaling suite: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
