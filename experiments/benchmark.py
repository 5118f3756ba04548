r"""Speed benchmarks: prints a table and writes JSON.

    python -m experiments.benchmark --suite=estimators --output_dir=/tmp/bench
    python -m experiments.benchmark --suite=agents --output_dir=/tmp/bench
    python -m experiments.benchmark --suite=scaling --output_dir=/tmp/bench [--quick]

Suite ``scaling`` (``experiments/benchmark_scaling.py``, which has the finer flags): PPO and SAC
env steps per second against the number of seeds and devices, with a PNG.

Suite ``estimators``: for S samples and each estimator, the wall time (after compilation) of
``gradest.estimate_grad`` beside the floor, a hand-written
``jax.jit(lambda: mean(jax.vmap(jax.grad(surrogate))(keys)))`` of the same per-sample function
(with the estimator's ``update`` of its state, which the helper returns too), and
a plain Python loop over samples calling a jitted single-sample gradient (timed on a subset of
samples and scaled linearly to S, which the table says). The machines are shared and noisy (two
passes once gave 1.44× and then 1.14× for the same ratio), so the sides of each ratio are timed
in the same rounds (``--rounds``, at least 5 by default), in turn, the order reversed every other
round (``_common.in_turn``); each round's time of a side is the median of ``--repeats`` calls, and
the table and the JSON give the median of the per-round ratios and their range (min–max).
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
from experiments import _common

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", "estimators", ["estimators", "agents", "scaling"],
                  "Which benchmark to run.")
flags.DEFINE_list("num_samples", ["1000", "100000"], "Sample counts S for the estimators suite.")
flags.DEFINE_integer("rounds", 5, "Rounds in which the sides of each ratio are timed in turn "
                     "(the median and range of the per-round ratios are reported).")
flags.DEFINE_integer("repeats", 5, "Timed calls of a side per round (their median is the round's "
                     "time).")
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


def _bern_dist(p):
    return distrax.Bernoulli(logits=p["logits"], dtype=jnp.float32)


def _bern_f(p, b):
    del p
    return jnp.sum((b - 0.3 * _VALUES) ** 2)


_GAUSS = ({"mu": jnp.linspace(-1.0, 1.0, _DIM), "sigma": jnp.full((_DIM,), 0.8)}, _gauss_dist, _gauss_f)
_CAT = ({"logits": jnp.linspace(0.5, -0.5, _DIM)}, _cat_dist, _cat_f)
_BERN = ({"logits": jnp.linspace(0.5, -0.5, _DIM)}, _bern_dist, _bern_f)


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
        *_discrete_cases(),
    ]


def _discrete_cases():
    """The discrete estimators past the seeds, on 8 independent Bernoullis and on the 8-class
    categorical: ARM/DisARM (2 evaluations of f per sample), REBAR/RELAX (2 per sample, and the
    gradient of the variance for their φ in ``update``), Gumbel-Rao (10 relaxed draws),
    unordered set (k = 4 classes without replacement). Not exact enumeration: its S per-sample
    gradients are S copies of one number, whose mean XLA folds in the floor, so the ratio would
    time the helper's fixed dispatch (≈ 0.1 ms) against nothing."""
    relax_cv = gradest.relax_control_variate(jax.random.key(0), _DIM)
    return [
        ("arm", gradest.arm(), _BERN),
        ("disarm", gradest.disarm(), _BERN),
        ("rebar[bernoulli]", gradest.rebar(), _BERN),
        ("rebar[categorical]", gradest.rebar(), _CAT),
        ("relax[bernoulli]", gradest.relax(relax_cv), _BERN),
        ("relax[categorical]", gradest.relax(relax_cv), _CAT),
        ("gumbel_rao[M=10]", gradest.gumbel_rao(0.5, 10), _CAT),
        ("unordered_set[k=4]", gradest.unordered_set(4), _CAT),
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


def timed_rounds(sides: dict, rounds: int, clock: Callable[[], float] = time.perf_counter
                 ) -> dict:
    """Times every side in each of ``rounds`` rounds, in turn (``_common.in_turn``: the order
    reversed every other round), so a change in the machine's load hits all sides alike.

    Args:
      sides: name -> (fn, calls): ``fn()`` is compiled and warm; a round's time of the side is
        the median over ``calls`` calls, each waited for (``jax.block_until_ready``).
      rounds: ≥ 1.
      clock: seconds (tests pass a stand-in).

    Returns name -> per-round seconds.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be positive, got {rounds}")

    def timer(fn, calls):
        def median_seconds():
            times = []
            for _ in range(calls):
                t0 = clock()
                jax.block_until_ready(fn())
                times.append(clock() - t0)
            return statistics.median(times)
        return median_seconds

    per_round = {name: [] for name in sides}
    for r in range(rounds):
        timers = {name: timer(fn, calls) for name, (fn, calls) in sides.items()}
        for name, seconds in _common.in_turn(timers, r).items():
            per_round[name].append(seconds)
    return per_round


def ratio_row(per_round: dict, numerator: str, denominator: str) -> dict:
    """``{numerator}_over_{denominator}``: the median of the per-round ratios, its range
    (min–max) and the ratios."""
    summary = _common.ratio_summary([a / b for a, b in zip(per_round[numerator],
                                                           per_round[denominator])])
    key = f"{numerator}_over_{denominator}"
    return {key: summary["median"], f"{key}_range": [summary["min"], summary["max"]],
            f"{key}_per_round": summary["per_round"]}


def time_estimator(estimator, problem, num_samples: int, key, rounds: int, repeats: int,
                   loop_samples: int) -> dict:
    """Seconds of the helper, the hand-written floor and the Python loop for one case (medians
    over rounds), and the helper's and the loop's ratios to the floor per round."""
    params, make_dist, f = problem
    state = estimator.init()

    def per_sample(k, p):
        return estimator.surrogate(k, p, make_dist, f, state)[0]

    grad_with_aux = jax.grad(estimator.surrogate, argnums=1, has_aux=True)

    @jax.jit
    def floor(key, p):
        # The mean per-sample gradient and the estimator's update (REBAR's and RELAX's φ step
        # from their aux; the identity, which XLA drops with the aux, for the stateless ones):
        # the work the helper returns.
        grads, aux = jax.vmap(lambda k: grad_with_aux(k, p, make_dist, f, state))(
            jax.random.split(key, num_samples))
        return jax.tree.map(lambda g: jnp.mean(g, axis=0), grads), estimator.update(state, aux)

    single = jax.jit(jax.grad(per_sample, argnums=1))

    def loop(key, p):
        keys = jax.random.split(key, loop_samples)
        total = jax.tree.map(jnp.zeros_like, p)
        for i in range(loop_samples):
            total = jax.tree.map(jnp.add, total, single(keys[i], p))
        return total

    sides = {
        "helper": (lambda: gradest.estimate_grad(estimator, key, params, make_dist, f,
                                                 num_samples).grad, repeats),
        "floor": (lambda: floor(key, params), repeats),
        # Slow (a dispatch per sample): one call per round.
        "python_loop": (lambda: loop(key, params), 1),
    }
    for fn, _ in sides.values():
        jax.block_until_ready(fn())  # compile and warm up
    per_round = timed_rounds(sides, rounds)
    per_round["python_loop"] = [t * num_samples / loop_samples for t in per_round["python_loop"]]
    return {"helper_s": statistics.median(per_round["helper"]),
            "floor_s": statistics.median(per_round["floor"]),
            "python_loop_s": statistics.median(per_round["python_loop"]),
            **ratio_row(per_round, "helper", "floor"),
            **ratio_row(per_round, "python_loop", "floor")}


def _median_and_range(row: dict, key: str, digits: int) -> str:
    lo, hi = row[f"{key}_range"]
    return f"{row[key]:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}]"


def run_estimators_suite(sample_counts, rounds: int, repeats: int, loop_samples: int,
                         seed: int) -> dict:
    key = jax.random.key(seed)
    rows = []
    header = (f"{'estimator':32s} {'S':>8s} {'helper ms':>10s} {'floor ms':>10s} "
              f"{'helper/floor [range]':>21s} {'loop ms*':>11s} {'loop/floor [range]':>19s}")
    print(header)
    print("-" * len(header))
    for s in sample_counts:
        for name, est, problem in estimator_cases():
            r = time_estimator(est, problem, s, key, rounds, repeats, loop_samples)
            rows.append({"estimator": name, "num_samples": s, **r})
            print(f"{name:32s} {s:8d} {1e3 * r['helper_s']:10.3f} {1e3 * r['floor_s']:10.3f} "
                  f"{_median_and_range(r, 'helper_over_floor', 2):>21s} "
                  f"{1e3 * r['python_loop_s']:11.1f} "
                  f"{_median_and_range(r, 'python_loop_over_floor', 0):>19s}", flush=True)
    print(f"Times: medians over {rounds} rounds (each the median of {repeats} calls; the loop one "
          f"call); ratios: the median of the per-round ratios [min–max].\n"
          f"* Python loop timed over {loop_samples} samples and scaled linearly to S.")
    return {"suite": "estimators", "device": str(jax.devices()[0]), "jax": jax.__version__,
            "rounds": rounds, "repeats": repeats, "loop_samples": loop_samples, "rows": rows}


def main(argv):
    del argv
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    if FLAGS.suite == "estimators":
        result = run_estimators_suite([int(s) for s in FLAGS.num_samples], FLAGS.rounds,
                                      FLAGS.repeats, FLAGS.loop_samples, FLAGS.seed)
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
