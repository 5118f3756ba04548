"""The five seed verdicts read no timings (issue 15): fed results whose wall-clock fields are
wildly different, or missing, each verdict function returns the same verdict and the same line.
A verdict that read a timing would change with the first or fail with the second.

The results are hand-made in the shape each module's ``run`` returns, with its timing fields, on
both sides of each rule (the per-module tests check each rule's sides in detail)."""

import copy
import re

import numpy as np
import pytest

from experiments import (
    discrete_estimators,
    gumbel,
    reinforce_baselines,
    report,
    sac_estimators,
    variance,
    zeroth_order,
)

# Every wall-clock field the modules write: "seconds", "compile_seconds", "train_seconds",
# "seconds_per_update", and the benchmarks' "..._s".
TIMING = re.compile(r"second|_s$")


def _without_timings(tree):
    if isinstance(tree, dict):
        return {k: _without_timings(v) for k, v in tree.items() if not TIMING.search(k)}
    if isinstance(tree, list):
        return [_without_timings(v) for v in tree]
    return tree


def _scrambled_timings(tree, rng, inside=False):
    """Every number under a timing key replaced by a random one from 10⁻⁶ to 10⁶ seconds."""
    if isinstance(tree, dict):
        return {k: _scrambled_timings(v, rng, inside or bool(TIMING.search(k)))
                for k, v in tree.items()}
    if isinstance(tree, list):
        return [_scrambled_timings(v, rng, inside) for v in tree]
    if inside and isinstance(tree, float):
        return float(10.0 ** rng.uniform(-6, 6))
    return tree


def _count_timings(tree) -> int:
    if isinstance(tree, dict):
        return sum(bool(TIMING.search(k)) + _count_timings(v) for k, v in tree.items())
    if isinstance(tree, list):
        return sum(_count_timings(v) for v in tree)
    return 0


# --------------------------------------------------------------------------------------------
# Hand-made results, one function per module; ``good`` on the holding side of its rule.


def _variance(good: bool) -> dict:
    rows = []
    for problem, pw in (("shifted_square", 0.5), ("cos", 2.0 if good else 0.5)):
        for j in variance.COORDS:
            rows += [{"problem": problem, "k": 3.0, "coordinate": j,
                      "estimator": "score_function", "exact_variance": 1.0},
                     {"problem": problem, "k": 3.0, "coordinate": j, "estimator": "pathwise",
                      "exact_variance": pw}]
    implicit = [{"problem": p, "estimator": e, "total_variance": v, "total_variance_se": 0.01}
                for p in ("gamma/square", "beta/square")
                for e, v in (("pathwise (implicit)", 0.5), ("score_function+loo", 1.0))]
    # Seed 000's results carry no timing of their own; the report adds its seconds around them.
    return {"variance_vs_k": rows, "full_vs_diagonal": [], "implicit_vs_score": implicit,
            "seconds": 12.0}


def _gumbel(good: bool) -> dict:
    names = ("gumbel_softmax", "straight_through", "score_function")
    return {
        "seconds": 80.0,
        "gumbel_max": {"p_value": 0.4 if good else 1e-6},
        "bias_variance": {
            "temperatures": [0.1, 1.0, 5.0],
            "gumbel_softmax": {"relative_bias": [0.1, 0.5, 0.9],
                               "relative_bias_se": [0.01] * 3,
                               "total_variance": [5.0, 0.1, 1e-3],
                               "total_variance_se": [0.1, 0.01, 1e-4]},
            "score_function": {"max_abs_zscore": 1.5}},
        "vae": {"final_elbo": dict(zip(names, (-20.0, -20.5, -21.0))),
                "gain_over_marginal": dict(zip(names, (4.0, 3.5, 3.0))),
                "gain_over_marginal_se": dict.fromkeys(names, 0.2),
                "marginal_elbo": -24.0, "best": "gumbel_softmax",
                "peak_elbo": dict(zip(names, (-19.5, -20.0, -20.5))),
                "peak_step": dict.fromkeys(names, 10),
                "best_gap": {"straight_through": 0.5, "score_function": 1.0},
                "best_gap_se": {"straight_through": 0.1, "score_function": 0.1},
                "train_seconds": dict.fromkeys(names, 30.0)},
    }


def _sac(good: bool) -> dict:
    def variant(returns, mflop, ms):
        returns = np.asarray(returns, float)
        return {"final_return_per_seed": returns.tolist(), "final_return_mean": returns.mean(),
                "final_return_se": returns.std(ddof=1) / np.sqrt(returns.size),
                "update_cost": {"flops": mflop * 1e6, "bytes_accessed": mflop * 3e5,
                                "transcendentals": 1e4},
                "seconds_per_update": ms * 1e-3, "compile_seconds": 20.0,
                "train_seconds": 15.0, "grad_variance_median": 1.0}

    good_returns = [-150.0, -160.0, -155.0, -145.0]
    bad_returns = [-1200.0, -1300.0, -1250.0, -1100.0]
    # The score function's FLOPs 1.4× pathwise's (holds) or 1.6× (does not).
    flops = 56.0 if good else 64.0
    return {"sizes": {"total_steps": 10_000, "num_seeds": 4},
            "variants": {"pathwise": variant(good_returns, 40.0, 1.0),
                         "score_function+V": variant([x - 2 for x in good_returns], flops, 1.4),
                         "score_function": variant(bad_returns, flops, 1.3)}}


def _zeroth_order(good: bool) -> dict:
    return {
        "seconds": 60.0,
        "cosine": {"epsilons": [1e-3, 0.1, 3.0],
                   "expected_reward": {"mean_cosine": [0.999 if good else 0.8, 0.9, 0.2],
                                       "mean_cosine_se": [0.002, 0.01, 0.1]},
                   "accuracy": {"mean_cosine": [0.1, 0.6, 0.2], "mean_cosine_se": [0.03] * 3}},
        "training": {"final_heldout_accuracy": {"cross_entropy": 0.96, "policy_gradient": 0.9},
                     "num_test": 359,
                     "train_seconds": {"cross_entropy": 3.0, "policy_gradient": 9.0}},
    }


def _reinforce(good: bool) -> dict:
    run = {"compile_seconds": 10.0, "train_seconds": 5.0}
    return {
        "sizes": {"num_seeds": 4},
        "runs": {"CartPole-v1": {reinforce_baselines.NONE: dict(run),
                                 reinforce_baselines.LEARNED: dict(run)}},
        "comparison": {"CartPole-v1": {
            "variance_ratio_per_seed": [3.0, 2.5, 4.0, 2.0 if good else 0.9],
            "variance_ratio": 2.8, "cross_run_variance_ratio": 1.5,
            "auc_none": 100.0, "auc_learned": 150.0, "auc_difference": 50.0,
            "auc_difference_se": 10.0, "final_none": 120.0, "final_learned": 300.0}},
    }


def _discrete(good: bool) -> dict:
    """DisARM < ARM, RELAX < REBAR < REINFORCE-LOO everywhere, with per-estimator wall times;
    not good: DisARM above ARM in every seed of the binary VAE."""
    def toy(v, unbiased=True):
        return {"unbiased": unbiased, "log10_variance_init": v, "log10_variance_init_se": 0.01,
                "log10_variance_per_evaluation_init": v,
                "log10_variance_per_evaluation_init_se": 0.01, "solved_fraction": 1.0,
                "train_seconds": 2.0}

    def vae(per_seed):
        return {"unbiased": True, "log10_variance": float(np.mean(per_seed)),
                "log10_variance_per_seed": per_seed, "seconds_per_step": 0.01}

    binary = {"reinforce_loo": vae([3.0, 3.1, 2.9]), "arm": vae([2.5, 2.6, 2.4]),
              "disarm": vae([2.0, 2.1, 1.9] if good else [2.7, 2.8, 2.6]),
              "rebar": vae([2.8, 2.9, 2.7]), "relax": vae([2.2, 2.3, 2.1])}
    categorical = {"reinforce_loo": vae([3.0, 3.1, 2.9]), "rebar": vae([2.8, 2.9, 2.7]),
                   "relax": vae([2.7, 2.8, 2.6]), "unordered_set": vae([2.0, 2.2, 2.1])}
    return {"toy": {"estimators": {"reinforce": toy(-3.0), "reinforce_loo": toy(-6.0),
                                   "arm": toy(-6.5), "disarm": toy(-9.0), "rebar": toy(-7.0),
                                   "relax": toy(-7.5)}},
            "vae": {"binary": binary, "categorical": categorical}, "wall_seconds": 100.0}


CASES = {"variance": (variance, _variance), "discrete_estimators": (discrete_estimators, _discrete), "gumbel": (gumbel, _gumbel),
         "sac_estimators": (sac_estimators, _sac), "zeroth_order": (zeroth_order, _zeroth_order),
         "reinforce_baselines": (reinforce_baselines, _reinforce)}


def test_every_claim_of_the_report_is_covered():
    assert {c.module for c in report.CLAIMS} == set(CASES)


@pytest.mark.parametrize("good", [True, False], ids=["holds", "does_not_hold"])
@pytest.mark.parametrize("name", list(CASES))
def test_verdict_reads_no_timing(name, good):
    module, make = CASES[name]
    results = make(good)
    if name != "variance":
        assert _count_timings(results) > 0  # the hand-made results do carry timings
    holds, line = module.verdict(copy.deepcopy(results))
    assert holds is good
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert module.verdict(_scrambled_timings(results, rng)) == (holds, line)
    assert module.verdict(_without_timings(results)) == (holds, line)


@pytest.mark.parametrize("name", list(CASES))
def test_every_module_states_its_rule_in_one_sentence(name):
    rule = CASES[name][0].RULE
    assert rule.startswith("Holds when") and rule.endswith(".")
    # One sentence: no full stop before the end except inside numbers like "0.98" or "e.g.".
    assert re.search(r"[a-z)]\. [A-Z]", rule[:-1]) is None, rule
