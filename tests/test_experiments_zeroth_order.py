"""experiments.zeroth_order (seed 003) end to end at toy sizes, its statistics and verdict on
synthetic numbers, and its command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import _common, zeroth_order as zo

TINY = dict(train_steps=4, eval_every=2, num_directions=4, loo_samples=2, warmup_steps=2,
            cosine_batch=32, num_epsilons=2, cosine_directions=16, cosine_repeats=2)


@pytest.mark.slow
def test_run_end_to_end(tmp_path):
    results = zo.run(tmp_path, quick=True, seed=0, **TINY)
    for name in ("zeroth_order.json", *zo.FIGURES):
        assert (tmp_path / name).stat().st_size > 0, name
    assert zo.markdown(results).count("\n|") > TINY["num_epsilons"]
    written = json.loads((tmp_path / "zeroth_order.json").read_text())
    assert written["verdict"]["line"] == results["verdict"]["line"]
    training = results["training"]
    assert set(training["final_heldout_accuracy"]) == {
        "cross_entropy", "policy_gradient", "zeroth_order[none]", "zeroth_order[value]",
        "zeroth_order[optimal]"}
    assert len(training["steps"]) == TINY["train_steps"] // TINY["eval_every"] + 1
    cos = results["cosine"]
    assert cos["dimension"] == 64 * 10 + 10
    for objective in ("expected_reward", "accuracy"):
        assert len(cos[objective]["mean_cosine"]) == TINY["num_epsilons"]
        assert all(-1.0 <= c <= 1.0 for c in cos[objective]["cosine"])


def test_mean_cosine_removes_the_noise():
    """Noisy draws around a unit mean at 60° to g*, with tr Var / n = 0.5: cos(ḡ, g*) is pulled
    to about 0.5/sqrt(1.5) = 0.41, the noise-free estimate recovers cos 60° = 0.5 (tolerance
    0.06, about 3.5 of its standard errors of ≈ 0.016 in the numerator and the norm)."""
    rng = np.random.default_rng(0)
    d, n = 2_000, 4_000
    exact = np.zeros(d)
    exact[0] = 1.0
    mean = np.zeros(d)
    mean[0], mean[1] = 0.5, np.sqrt(0.75)
    grads = mean + rng.standard_normal((n, d))
    assert zo.cosine(grads.mean(axis=0), exact) < 0.45
    assert abs(zo.mean_cosine(grads, exact) - 0.5) < 0.06
    assert zo.cosine(np.zeros(d), exact) == 0.0


def test_direction_stats_of_exact_draws():
    exact = np.array([1.0, 2.0, 0.0])
    grads = np.tile(exact, (8, 1)) + 1e-6 * np.arange(24).reshape(8, 3)
    s = zo.direction_stats(grads, exact, repeats=4)
    assert s["cosine"] == pytest.approx(1.0) and s["mean_cosine"] == pytest.approx(1.0)
    assert s["noise_ceiling"] == pytest.approx(1.0)
    assert s["fraction_nonzero"] == 1.0
    assert s["mean_resolved"] and s["total_variance_per_call"] == pytest.approx(
        np.sum(np.var(grads, axis=0, ddof=1)))


def test_an_unresolved_mean_direction_is_flagged_and_explained():
    """Draws ±e_1 in equal numbers: the mean is exactly 0, below its noise, so cos(E ĝ, g*) is 0
    by definition, flagged unresolved, and the table says so instead of printing 0 ± se."""
    exact = np.array([1.0, 0.0])
    grads = np.array([[1.0, 0.0], [-1.0, 0.0]] * 4)
    s = zo.direction_stats(grads, exact, repeats=2)
    assert s["mean_cosine"] == 0.0 and not s["mean_resolved"]
    stats = {k: [v] for k, v in s.items()}
    assert zo._mean_cos(stats, 0).startswith("unresolved†")
    stats["mean_resolved"] = [True]
    assert zo._mean_cos(stats, 0) == f"0 ± {s['mean_cosine_se']:.2g}"


def synthetic_results(j_cos=0.999, j_se=0.002, raw_cos=(0.1, 0.6, 0.2), raw_se=0.03):
    """Numbers for seed 003's claim; the defaults hold."""
    return {
        "cosine": {"epsilons": [1e-3, 0.1, 3.0],
                   "expected_reward": {"mean_cosine": [j_cos, 0.9, 0.2],
                                       "mean_cosine_se": [j_se, 0.01, 0.1]},
                   "accuracy": {"mean_cosine": list(raw_cos), "mean_cosine_se": [raw_se] * 3}},
        "training": {"final_heldout_accuracy": {"cross_entropy": 0.96, "zeroth_order[none]": 0.4},
                     "num_test": 359},
    }


def test_verdict_holds_on_synthetic_numbers():
    holds, line = zo.verdict(synthetic_results())
    assert holds
    assert line.startswith("seed 003 HOLDS")
    assert "aligned, not equal" in line and "best 0.600 ± 0.030 at ε = 0.1 (20.0 s.e. > 3" in line


@pytest.mark.parametrize("kwargs", [
    dict(j_cos=0.9),                          # ZO of J does not approach the policy gradient
    dict(raw_cos=(0.01, 0.05, -0.1)),         # raw-accuracy direction not resolved from 0
])
def test_verdict_fails_when_a_claim_breaks(kwargs):
    holds, line = zo.verdict(synthetic_results(**kwargs))
    assert not holds
    assert line.startswith("seed 003 FAILS")


def test_verdict_accepts_a_noisy_cosine_within_its_error_of_one():
    assert zo.verdict(synthetic_results(j_cos=0.95, j_se=0.03))[0]


def test_cli_refuses_non_empty_output_dir(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "experiments.zeroth_order",
                           f"--output_dir={tmp_path}", "--quick"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == _common.EXIT_OUTPUT_EXISTS
    assert proc.stderr.strip().splitlines()[-1].startswith("error: output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
