r"""Side by side with rejax: our agents and rejax's, alternately, round after round, in one run.

The machines here are shared and noisy (±10–15% between minutes), so a speed claim is a ratio
measured in one sitting. Each round times our single-seed PPO (PureJaxRL's CartPole
configuration) and SAC (rejax's Pendulum configuration) as ``experiments.benchmark_agents``
does, and right after each, rejax on the same configuration through the peers' script
(``../shared/peers/bench_rejax.py`` in its own venv, ``../shared/peers/setup.sh``). Per round and
agent it reports both sides' best run's env steps per second and their ratio, and both compile
times (ours: trace, lower and compile; rejax's: trace+lower plus compile, as its script reports
them apart); then the medians over rounds. Prints a table and writes ``peers_benchmark.json``.

Our programs are compiled by ``agents.jit``, on CPU with ``xla_cpu_prefer_vector_width=512``
(``agents/_jit.py``); rejax, as shipped, with XLA's defaults. ``--peer_same_options`` also runs
rejax in each round with our CPU options (through ``XLA_FLAGS``) and reports that ratio too, so
the gain of the options and of the code can be told apart.

    python -m experiments.benchmark_peers --output_dir=/tmp/peers --rounds=3 \
        [--agents=ppo] [--peer_same_options] [--peer_python=~/.cache/gradest-peers/venv/bin/python
         --peer_dir=../shared/peers]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Callable

import jax
from absl import app, flags

import agents
from experiments import _common, benchmark_agents

AGENTS = ("ppo", "sac")
# The rejax commands the module docstring of experiments.benchmark_agents gives.
PEER_ARGS = {
    "ppo": ["--algo", "ppo", "--config", "configs/rejax_ppo_cartpole_purejaxrl_matched.yaml",
            "--repeats", "3", "--tag", "ppo_matched"],
    "sac": ["--algo", "sac", "--config", "configs/rejax_pendulum.yaml", "--total-timesteps",
            "10000", "--eval-freq", "10000", "--repeats", "2", "--tag", "sac_10k"],
}
DEFAULT_PEER_PYTHON = "~/.cache/gradest-peers/venv/bin/python"
DEFAULT_PEER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "shared", "peers")


class PeerError(RuntimeError):
    """The peer venv or script is missing, or its run failed."""


def xla_flags(options: dict) -> str:
    """XLA compiler options as ``XLA_FLAGS`` text: ``{"a": 512, "b": True}`` →
    ``--a=512 --b=true``."""
    text = lambda v: str(v).lower() if isinstance(v, bool) else str(v)
    return " ".join(f"--{k}={text(v)}" for k, v in options.items())


def run_peer(agent: str, peer_python: str, peer_dir: str, options: dict | None = None) -> dict:
    """Runs rejax's ``agent`` benchmark once, with XLA ``options`` added to ``XLA_FLAGS`` if
    given; {"env_steps_per_second" (best run), "compile_s" (trace+lower plus compile), "run_s"}.
    Raises ``PeerError`` if it cannot."""
    python = os.path.expanduser(peer_python)
    script = os.path.join(peer_dir, "bench_rejax.py")
    for path, what in [(python, "peer python"), (script, "peer script")]:
        if not os.path.exists(path):
            raise PeerError(f"{what} not found: {path} (see ../shared/peers/README.md)")
    env = {**os.environ}
    if options:
        env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), xla_flags(options)]))
    with tempfile.TemporaryDirectory() as out:
        env["PEERS_OUT"] = out
        proc = subprocess.run([python, script] + PEER_ARGS[agent], cwd=peer_dir, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise PeerError(f"rejax {agent} failed (exit {proc.returncode}): "
                            f"{proc.stderr.strip().splitlines()[-1:] or ''}")
        tag = PEER_ARGS[agent][PEER_ARGS[agent].index("--tag") + 1]
        with open(os.path.join(out, f"{tag}.json")) as f:
            result = json.load(f)
    return parse_peer(result)


def parse_peer(result: dict) -> dict:
    """The fields we compare from bench_rejax.py's JSON."""
    runs = result["runs"]
    return {"env_steps_per_second": max(r["env_steps_per_s"] for r in runs),
            "compile_s": result["trace_lower_s"] + result["compile_s"],
            "run_s": [r["run_s"] for r in runs]}


def ours(agent: str) -> dict:
    """Our side of a round: ``experiments.benchmark_agents``' single-seed row."""
    row = (benchmark_agents.time_ppo(1, repeats=3) if agent == "ppo"
           else benchmark_agents.time_sac(repeats=2))
    return {"env_steps_per_second": row["env_steps_per_second"], "compile_s": row["compile_s"],
            "run_s": row["run_s"]}


def side_by_side(rounds: int, agents=AGENTS, ours_fn: Callable[[str], dict] = ours,
                 peer_fn: Callable[[str], dict] | None = None,
                 peer_same_fn: Callable[[str], dict] | None = None) -> dict:
    """``rounds`` rounds of (ours, rejax[, rejax with our options]) per agent; per-round rows
    and medians. ``peer_same_fn``, if given, is rejax under our XLA options."""
    if rounds < 1:
        raise ValueError(f"rounds must be positive, got {rounds}")
    peer_fn = peer_fn or (lambda a: run_peer(a, DEFAULT_PEER_PYTHON, DEFAULT_PEER_DIR))
    keys = ["speed_ratio", "ours_steps_per_s", "rejax_steps_per_s", "ours_compile_s",
            "rejax_compile_s"]
    if peer_same_fn is not None:
        keys += ["same_options_ratio", "rejax_same_options_steps_per_s"]
    rows = []
    for r in range(rounds):
        for agent in agents:
            mine, theirs = ours_fn(agent), peer_fn(agent)
            row = {"round": r, "agent": agent,
                   "ours_steps_per_s": mine["env_steps_per_second"],
                   "rejax_steps_per_s": theirs["env_steps_per_second"],
                   "speed_ratio": mine["env_steps_per_second"] / theirs["env_steps_per_second"],
                   "ours_compile_s": mine["compile_s"], "rejax_compile_s": theirs["compile_s"]}
            line = (f"round {r} {agent}: ours {row['ours_steps_per_s']:,.0f} steps/s "
                    f"(compile {row['ours_compile_s']:.2f} s), rejax "
                    f"{row['rejax_steps_per_s']:,.0f} (compile {row['rejax_compile_s']:.2f} s), "
                    f"ratio {row['speed_ratio']:.2f}")
            if peer_same_fn is not None:
                same = peer_same_fn(agent)["env_steps_per_second"]
                row.update(rejax_same_options_steps_per_s=same,
                           same_options_ratio=mine["env_steps_per_second"] / same)
                line += f"; rejax with our options {same:,.0f}, ratio {row['same_options_ratio']:.2f}"
            rows.append(row)
            print(line, flush=True)
    medians = {}
    for agent in agents:
        mine = [row for row in rows if row["agent"] == agent]
        medians[agent] = {k: statistics.median(row[k] for row in mine) for k in keys}
        medians[agent]["speed_ratio_range"] = [min(row["speed_ratio"] for row in mine),
                                               max(row["speed_ratio"] for row in mine)]
    return {"rounds": rounds, "rows": rows, "medians": medians}


def main(argv):
    del argv
    f = flags.FLAGS
    out = _common.output_dir_or_exit(f.output_dir, overwrite=True)
    peer = lambda a: run_peer(a, f.peer_python, f.peer_dir)
    options = agents.compiler_options()
    peer_same = (lambda a: run_peer(a, f.peer_python, f.peer_dir, options)) if (
        f.peer_same_options and options) else None
    try:
        result = side_by_side(f.rounds, agents=tuple(f.agents), peer_fn=peer,
                              peer_same_fn=peer_same)
    except (PeerError, ValueError) as e:
        print(f"benchmark_peers: {e}", file=sys.stderr)
        sys.exit(2)
    result.update({"device": str(jax.devices()[0]), "jax": jax.__version__,
                   "our_compiler_options": options or {},
                   "peer_same_options_xla_flags": xla_flags(options) if peer_same else None})
    print(f"{'agent':>5} {'ratio (median)':>15} {'range':>13} {'ours steps/s':>13} "
          f"{'rejax steps/s':>14} {'ours compile':>13} {'rejax compile':>14}")
    for agent, m in result["medians"].items():
        lo, hi = m["speed_ratio_range"]
        print(f"{agent:>5} {m['speed_ratio']:>15.2f} {f'{lo:.2f}–{hi:.2f}':>13} "
              f"{m['ours_steps_per_s']:>13,.0f} {m['rejax_steps_per_s']:>14,.0f} "
              f"{m['ours_compile_s']:>12.2f}s {m['rejax_compile_s']:>13.2f}s")
        if "same_options_ratio" in m:
            print(f"{agent:>5} against rejax with our options ({xla_flags(options)}): ratio "
                  f"{m['same_options_ratio']:.2f}, rejax "
                  f"{m['rejax_same_options_steps_per_s']:,.0f} steps/s (medians)")
    _common.write_json(out / "peers_benchmark.json", result)
    print(f"wrote {out / 'peers_benchmark.json'}")


if __name__ == "__main__":
    flags.DEFINE_string("output_dir", "results/peers", "where to write the JSON")
    flags.DEFINE_integer("rounds", 3, "alternating rounds (the medians are reported)")
    flags.DEFINE_multi_enum("agents", list(AGENTS), list(AGENTS), "which agents to compare")
    flags.DEFINE_bool("peer_same_options", False,
                      "also run rejax with our XLA CPU options (agents.compiler_options)")
    flags.DEFINE_string("peer_python", DEFAULT_PEER_PYTHON, "python of the rejax venv")
    flags.DEFINE_string("peer_dir", DEFAULT_PEER_DIR, "the folder of bench_rejax.py")
    app.run(main)
