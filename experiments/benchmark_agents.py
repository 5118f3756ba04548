"""Agents suite of the benchmark: PPO env steps per second on CartPole-v1.

PureJaxRL's configuration (4 envs × 128 steps, 4 epochs × 4 minibatches, 2×64 tanh, lr 2.5e-4
annealed, 5·10⁵ steps) at 1, 4 and 16 vmapped seeds. Compilation is timed apart from the run
(``jax.jit(...).lower(...).compile()``, then the compiled call under ``block_until_ready``); the
training still evaluates and logs actor-gradient diagnostics (every ``log_interval`` updates), but
prints nothing. Steps per second count training env steps of all seeds together. One seed runs
under plain ``jax.jit`` (as PureJaxRL and rejax time a single seed), several under
``jax.jit(jax.vmap(...))``.

    python -m experiments.benchmark_agents --output_dir=/tmp/bench
"""

from __future__ import annotations

import json
import os
import time

import gymnax
import jax
import numpy as np
from absl import app, flags

from agents import ppo

SEEDS = (1, 4, 16)

# PureJaxRL's ppo.py CartPole config; 976 updates = 16 logs × 61 updates, the same number of env
# steps PureJaxRL runs for a 5·10⁵ budget.
PUREJAXRL_CARTPOLE = ppo.PPOConfig(
    num_envs=4, num_steps=128, total_steps=500_000, num_epochs=4, num_minibatches=4,
    actor_widths=(64, 64), critic_widths=(64, 64), activation="tanh", learning_rate=2.5e-4,
    anneal_lr=True, gamma=0.99, gae_lambda=0.95, clip_epsilon=0.2, ent_coef=0.01, vf_coef=0.5,
    max_grad_norm=0.5, log_interval=61, eval_episodes=32, verbose=False)


def time_ppo(num_seeds: int, repeats: int = 2, config: ppo.PPOConfig = PUREJAXRL_CARTPOLE) -> dict:
    """Compile time, best run time and env steps per second of PPO with ``num_seeds`` seeds."""
    env, env_params = gymnax.make("CartPole-v1")
    train = ppo.make_train(config, env, env_params)
    # One seed runs unbatched (as PureJaxRL and rejax time it); several are vmapped.
    if num_seeds == 1:
        train, make_keys = jax.jit(train), lambda r: jax.random.key(r)
    else:
        train = jax.jit(jax.vmap(train))
        make_keys = lambda r: jax.random.split(jax.random.key(r), num_seeds)
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
    return {"num_seeds": num_seeds, "compile_s": compile_s, "run_s": run_s,
            "env_steps": steps, "env_steps_per_second": steps / best,
            "final_return_per_seed": final.tolist()}


def run_agents_suite(output_dir: str, seeds=SEEDS, repeats: int = 2) -> dict:
    """Times PPO at each seed count, prints a table and writes ``agents_benchmark.json``."""
    rows = [time_ppo(n, repeats) for n in seeds]
    print(f"{'seeds':>5} {'compile s':>10} {'run s':>8} {'env steps/s':>12} {'final return':>13}")
    for row in rows:
        print(f"{row['num_seeds']:>5} {row['compile_s']:>10.2f} {min(row['run_s']):>8.2f} "
              f"{row['env_steps_per_second']:>12,.0f} {np.mean(row['final_return_per_seed']):>13.1f}")
    result = {"suite": "agents", "benchmark": "ppo_cartpole_purejaxrl_config",
              "device": str(jax.devices()[0]), "jax": jax.__version__, "rows": rows}
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "agents_benchmark.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


_OUTPUT_DIR = flags.DEFINE_string("output_dir", "results/benchmark", "where to write the JSON")
_REPEATS = flags.DEFINE_integer("repeats", 2, "timed runs per seed count (the best is reported)")


def main(argv):
    del argv
    run_agents_suite(_OUTPUT_DIR.value, repeats=_REPEATS.value)


if __name__ == "__main__":
    app.run(main)
