r"""Speed benchmarks: prints a table and writes JSON.

    python -m experiments.benchmark --suite=estimators --output_dir=/tmp/bench
    python -m experiments.benchmark --suite=agents --output_dir=/tmp/bench
    python -m experiments.benchmark --suite=scaling --output_dir=/tmp/bench [--quick]

Suite ``scaling`` (``experiments/benchmark_scaling.py``, which has the finer flags): PPO and SAC
env steps per second against the number of seeds and devices, with a PNG.

Suite ``estimators``: for S samples and each estimator, the median wall time (after compilation)
of ``gradest.estimate_grad`` beside the floor, a hand-written
``jax.jit(lambda: mean(jax.vmap(jax.grad(surrogate))(keys)))`` of the same per-sample function, and
a plain Python loop over samples calling a jitted single-sample gradient (timed on a subset of
samples and scaled linearly to S, which the table says). Ratios are measured side by side in one
run, because the machines are shared and noisy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

from absl import app, flags
import distrax
import jax
import jax.numpy as jnp

import gradest
from gradest import baselines

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", "estimators", ["estimators", "agents", "scaling"],
                  "Which benchmark to run.")
flags.DEFINE_list("num_samples", ["1000", "100000"], "Sample counts S for the estimators suite.")
flags.DEFINE_integer("repeats", 15, "Timed repetitions per measurement (the median is reported).")
flags.DEFINE_integer("loop_samples", 200,
                     "Samples timed in the plain Python loop (scaled linearly to S).")
flags.DEFINE_string("output_dir", "results/benchmark", "Where the JSON goes.")
flags.DEFINE_integer("seed", 0, "PRNG seed.")
flags.DEFINE_bool("quick", False, "Scaling suite: its quick sizes (seeds 1 and 16).")

_DIM = 8
_VALUES = jnp.linspace(-1.0, 2.0, _DIM)


def _gauss_dist(p):
    return distrax.Normal(p["mu"], p["sigma"])


def _gauss_f(p, x):
    del p
    return jnp.sum(jnp.cos(3.0 * x) + 0.5 * x**2)


def _cat_dist(p):
    return distrax.OneHotCategorical(logits=p["logits"], dtype=jnp.float32)


def _cat_f(p, y):
    del p
    return (jnp.dot(y, _VALUES) - 0.5) ** 2


_GAUSS = ({"mu": jnp.linspace(-1.0, 1.0, _DIM), "sigma": jnp.full((_DIM,), 0.8)}, _gauss_dist, _gauss_f)
_CAT = ({"logits": jnp.linspace(0.5, -0.5, _DIM)}, _cat_dist, _cat_f)


def estimator_cases():
    """(name, estimator, (params, make_dist, f)) for every estimator family."""
    return [
        ("score_function", gradest.score_function(), _GAUSS),
        ("score_function[loo K=4]", gradest.score_function(baselines.leave_one_out(4)), _GAUSS),
        ("score_function[optimal K=4]", gradest.score_function(baselines.optimal(4)), _GAUSS),
        ("score_function[moving_average]", gradest.score_function(baselines.moving_average()), _GAUSS),
        ("pathwise", gradest.pathwise(), _GAUSS),
        ("gumbel_softmax", gradest.gumbel_softmax(0.5), _CAT),
        ("straight_through", gradest.straight_through(0.5), _CAT),
        ("zeroth_order[M=4]", gradest.zeroth_order(0.05, 4), _GAUSS),
        ("zeroth_order[antithetic M=2]", gradest.zeroth_order(0.05, 2, antithetic=True), _GAUSS),
        *_measure_valued_and_control_variate_cases(),
    ]


def _gauss_mean_objective(p, x):
    del p
    return jnp.sum(x)


def _gauss_mean(p):
    return jnp.sum(p["mu"])


def _measure_valued_and_control_variate_cases():
    """Measure-valued derivatives (4·8 + 1 evaluations of f per sample on the 8-dim Gaussian, 8 on
    the 8-class categorical) and control variates (K = 16 draws, the default, per sample)."""
    return [
        ("measure_valued[coupled]", gradest.measure_valued(), _GAUSS),
        ("measure_valued", gradest.measure_valued(coupled=False), _GAUSS),
        ("measure_valued[categorical]", gradest.measure_valued(), _CAT),
        ("control_variate[score_function K=16]",
         gradest.control_variate(gradest.score_function(), _gauss_mean_objective, _gauss_mean), _GAUSS),
        ("delta_method[score_function K=16]", gradest.delta_method(gradest.score_function()), _GAUSS),
        ("delta_method[pathwise K=16]", gradest.delta_method(gradest.pathwise()), _GAUSS),
    ]


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_estimator(estimator, problem, num_samples: int, key, repeats: int, loop_samples: int) -> dict:
    """Median seconds of the helper, the hand-written floor and the Python loop for one case."""
    params, make_dist, f = problem
    state = estimator.init()

    def per_sample(k, p):
        return estimator.surrogate(k, p, make_dist, f, state)[0]

    @jax.jit
    def floor(key, p):
        grads = jax.vmap(jax.grad(per_sample, argnums=1), in_axes=(0, None))(
            jax.random.split(key, num_samples), p)
        return jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)

    single = jax.jit(jax.grad(per_sample, argnums=1))

    def loop(key, p):
        keys = jax.random.split(key, loop_samples)
        total = jax.tree.map(jnp.zeros_like, p)
        for i in range(loop_samples):
            total = jax.tree.map(jnp.add, total, single(keys[i], p))
        return total

    helper_s = _median_seconds(
        lambda: gradest.estimate_grad(estimator, key, params, make_dist, f, num_samples).grad, repeats)
    floor_s = _median_seconds(lambda: floor(key, params), repeats)
    loop_s = _median_seconds(lambda: loop(key, params), max(1, repeats // 5)) * num_samples / loop_samples
    return {"helper_s": helper_s, "floor_s": floor_s, "python_loop_s": loop_s,
            "helper_over_floor": helper_s / floor_s, "loop_over_floor": loop_s / floor_s}


def run_estimators_suite(sample_counts, repeats: int, loop_samples: int, seed: int) -> dict:
    key = jax.random.key(seed)
    rows = []
    header = (f"{'estimator':32s} {'S':>8s} {'helper ms':>10s} {'floor ms':>10s} "
              f"{'helper/floor':>12s} {'loop ms*':>11s} {'loop/floor':>10s}")
    print(header)
    print("-" * len(header))
    for s in sample_counts:
        for name, est, problem in estimator_cases():
            r = time_estimator(est, problem, s, key, repeats, loop_samples)
            rows.append({"estimator": name, "num_samples": s, **r})
            print(f"{name:32s} {s:8d} {1e3 * r['helper_s']:10.3f} {1e3 * r['floor_s']:10.3f} "
                  f"{r['helper_over_floor']:12.3f} {1e3 * r['python_loop_s']:11.1f} "
                  f"{r['loop_over_floor']:10.0f}", flush=True)
    print(f"* Python loop timed over {loop_samples} samples and scaled linearly to S.")
    return {"suite": "estimators", "device": str(jax.devices()[0]), "jax": jax.__version__,
            "repeats": repeats, "loop_samples": loop_samples, "rows": rows}


def main(argv):
    del argv
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    if FLAGS.suite == "estimators":
        result = run_estimators_suite([int(s) for s in FLAGS.num_samples], FLAGS.repeats,
                                      FLAGS.loop_samples, FLAGS.seed)
    elif FLAGS.suite == "scaling":
        # Its own program, with its own flags: no module it imports (experiments.train,
        # the agents) can then define a flag that collides with this module's.
        rc = subprocess.run([sys.executable, "-m", "experiments.benchmark_scaling",
                             f"--output_dir={FLAGS.output_dir}", f"--seed={FLAGS.seed}",
                             f"--quick={FLAGS.quick}"]).returncode
        if rc:
            sys.exit(rc)
        with open(os.path.join(FLAGS.output_dir, "scaling_benchmark.json")) as fh:
            result = json.load(fh)
    else:
        from experiments import benchmark_agents
        result = benchmark_agents.run_agents_suite(FLAGS.output_dir)
    path = os.path.join(FLAGS.output_dir, f"benchmark_{FLAGS.suite}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
