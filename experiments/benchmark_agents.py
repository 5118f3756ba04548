"""Agents suite of the benchmark: PPO env steps per second on CartPole-v1, SAC on Pendulum-v1.

PPO: PureJaxRL's configuration (4 envs × 128 steps, 4 epochs × 4 minibatches, 2×64 tanh, lr 2.5e-4
annealed, 5·10⁵ steps) at 1, 4 and 16 vmapped seeds. Compilation is timed apart from the run
(``jax.jit(...).lower(...).compile()``, then the compiled call under ``block_until_ready``); the
training still logs actor-gradient diagnostics (every ``log_interval`` updates) and evaluates 128
greedy episodes at the end (as the rejax commands below do), but prints nothing. Keys are
``agents.prng_key`` (``jax.random.key``). Steps per second count training env steps of all seeds together.
One seed runs under plain ``jax.jit`` (as PureJaxRL and rejax time a single seed), several under
``jax.jit(jax.vmap(...))``. The single seed is also compiled with XLA's backend (LLVM)
optimization level 1 (``compiler_options=...``): the same program and, on the CPU machines here,
about the same run time, in less compile time (15–40% in our runs; the rows say how much in
yours). Every program is compiled by ``agents.jit``, as ``experiments.train`` compiles it: plain
``jax.jit`` unless the launcher opts in (``AGENTS_CPU_VECTOR_WIDTH``, ``agents/_jit.py``); each row
records its options.

SAC: rejax's tuned Pendulum-v1 configuration (``experiments/configs/sac.py``, from
``../shared/peers/configs/rejax_pendulum.yaml``: one env, UTD 1, batch 256, 2×64 swish, buffer
10⁴, 256 warm-up steps), 10⁴ env steps, one seed; steps per second count every env step of
the run (warm-up included) with its gradient updates, evaluations and diagnostics.

    python -m experiments.benchmark_agents --output_dir=/tmp/bench

Compare with rejax side by side, in the same sitting (its venv: ../shared/peers/README.md):

    V=~/.cache/gradest-peers/venv/bin/python; cd ../shared/peers
    PEERS_OUT=/tmp/peer $V bench_rejax.py --algo ppo \
        --config configs/rejax_ppo_cartpole_purejaxrl_matched.yaml --repeats 3 --tag ppo_matched
    PEERS_OUT=/tmp/peer $V bench_rejax.py --algo sac --config configs/rejax_pendulum.yaml \
        --total-timesteps 10000 --eval-freq 10000 --repeats 2 --tag sac_10k

(rejax reports trace+lower and compile apart; ours' ``compile_s`` is both together.)
``python -m experiments.benchmark_peers`` runs both sides alternately (5 rounds) and reports the
per-round ratios, their medians and their ranges.
"""

from __future__ import annotations

import os
import time

import gymnax
import jax
import numpy as np
from absl import app, flags

from agents import compiler_options as agents_compiler_options, jit, ppo, prng_key, sac
from experiments import _common
from experiments.configs import sac as sac_config

SEEDS = (1, 4, 16)
# XLA's LLVM optimization level 1 instead of the default: same program, less compile time.
FAST_COMPILE = {"xla_backend_optimization_level": 1}

# PureJaxRL's ppo.py CartPole config; 976 updates = 16 logs × 61 updates, the same number of env
# steps PureJaxRL runs for a 5·10⁵ budget. Actor-gradient diagnostics at each of the 16 logs;
# the greedy evaluation, 128 episodes, at the last one only (eval_every=16), as the rejax
# command it is compared with evaluates (128 episodes at the start and the end).
PUREJAXRL_CARTPOLE = ppo.PPOConfig(
    num_envs=4, num_steps=128, total_steps=500_000, num_epochs=4, num_minibatches=4,
    actor_widths=(64, 64), critic_widths=(64, 64), activation="tanh", learning_rate=2.5e-4,
    anneal_lr=True, gamma=0.99, gae_lambda=0.95, clip_epsilon=0.2, ent_coef=0.01, vf_coef=0.5,
    max_grad_norm=0.5, log_interval=61, eval_episodes=128, eval_every=16, verbose=False)


def time_ppo(num_seeds: int, repeats: int = 2, config: ppo.PPOConfig = PUREJAXRL_CARTPOLE,
             compiler_options: dict | None = None) -> dict:
    """Compile time, best run time and env steps per second of PPO with ``num_seeds`` seeds."""
    env, env_params = gymnax.make("CartPole-v1")
    return _time("ppo", ppo.make_train(config, env, env_params), num_seeds, repeats,
                 compiler_options)


# rejax's Pendulum configuration as tuned (experiments/configs/sac.py): diagnostics at each of
# its 19 logs, the 128-episode evaluation at the last only, as rejax's `--eval-freq 10000`.
_SAC_TUNED = sac_config.SACRunConfig(**{**sac_config.TUNED["Pendulum-v1"], "verbose": False})
SAC_PENDULUM = _SAC_TUNED.replace(eval_every=sac.sizes(_SAC_TUNED).num_logs)


def time_sac(repeats: int = 2, config: sac_config.SACRunConfig = SAC_PENDULUM,
             compiler_options: dict | None = None) -> dict:
    """The same for SAC on Pendulum-v1 (rejax's configuration), one seed."""
    env, env_params = gymnax.make("Pendulum-v1")
    return _time("sac", sac_config.make_train(config, env, env_params), 1, repeats,
                 compiler_options)


def _time(agent: str, train, num_seeds: int, repeats: int, compiler_options: dict | None) -> dict:
    # One seed runs unbatched (as PureJaxRL and rejax time it); several are vmapped.
    if num_seeds == 1:
        train = jit(train, compiler_options=compiler_options)
        def make_keys(r):
            return prng_key(r)
    else:
        train = jit(jax.vmap(train), compiler_options=compiler_options)
        def make_keys(r):
            return jax.random.split(prng_key(r), num_seeds)
    start = time.perf_counter()
    compiled = train.lower(make_keys(0)).compile()
    compile_s = time.perf_counter() - start
    run_s = []
    for r in range(repeats):
        keys = make_keys(r)
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(keys))
        run_s.append(time.perf_counter() - start)
    final = np.atleast_1d(np.asarray(out.metrics["eval_return"])[..., -1])
    steps = int(np.asarray(out.metrics["env_steps"]).reshape(-1)[-1]) * num_seeds
    best = min(run_s)
    return {"agent": agent, "num_seeds": num_seeds,
            "compiler_options": agents_compiler_options(**(compiler_options or {})) or {},
            "compile_s": compile_s,
            "run_s": run_s,
            "env_steps": steps, "env_steps_per_second": steps / best,
            "final_return_per_seed": final.tolist()}


def run_agents_suite(output_dir: str, seeds=SEEDS, repeats: int = 2) -> dict:
    """Times PPO at each seed count (one seed also with ``FAST_COMPILE``) and SAC on Pendulum,
    prints a table and writes ``agents_benchmark.json``."""
    rows = [time_ppo(n, repeats) for n in seeds]
    if 1 in seeds:
        rows.append(time_ppo(1, repeats, compiler_options=FAST_COMPILE))
    rows.append(time_sac(repeats))
    print(f"{'agent':>5} {'seeds':>5} {'llvm O1':>7} {'compile s':>10} {'run s':>8} "
          f"{'env steps/s':>12} {'final return':>13}")
    for row in rows:
        llvm_o1 = "xla_backend_optimization_level" in row["compiler_options"]
        print(f"{row['agent']:>5} {row['num_seeds']:>5} {str(llvm_o1):>7} "
              f"{row['compile_s']:>10.2f} {min(row['run_s']):>8.2f} "
              f"{row['env_steps_per_second']:>12,.0f} {np.mean(row['final_return_per_seed']):>13.1f}")
    print("rejax side by side: see this module's docstring (bench_rejax.py in ../shared/peers)")
    result = {"suite": "agents", "benchmark": "ppo_cartpole_purejaxrl_config+sac_pendulum_rejax",
              "device": str(jax.devices()[0]), "jax": jax.__version__, "rows": rows}
    os.makedirs(output_dir, exist_ok=True)
    _common.write_json(os.path.join(output_dir, "agents_benchmark.json"), result)
    return result


def main(argv):
    del argv
    run_agents_suite(flags.FLAGS.output_dir, repeats=flags.FLAGS.repeats)


if __name__ == "__main__":
    # Flags only when run as the program: experiments.benchmark imports this module and has its
    # own --output_dir and --repeats.
    flags.DEFINE_string("output_dir", "results/benchmark", "where to write the JSON")
    flags.DEFINE_integer("repeats", 2, "timed runs per seed count (the best is reported)")
    app.run(main)
