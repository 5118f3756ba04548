"""experiments.reinforce_baselines (seed 004) runs end to end and decides its verdict correctly."""

import json

import pytest

from experiments import reinforce_baselines as rb


@pytest.mark.slow
def test_runs_end_to_end_with_tiny_budget(tmp_path):
    results = rb.run(tmp_path, quick=True, seed=0, envs=("CartPole-v1",),
                     variants=(rb.NONE, rb.LEARNED), num_seeds=2, total_steps=8_000)
    for name in rb.FIGURES + ("reinforce_baselines.json",):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "reinforce_baselines.json").read_text())
    assert set(saved["runs"]["CartPole-v1"]) == {rb.NONE, rb.LEARNED}
    assert "| env |" in rb.markdown(results)
    # The saved verdict is the rule of the claim applied to the saved numbers: the learned
    # baseline lowers the variance on every seed and raises the area under the curve by more
    # than 2 standard errors.
    c = saved["comparison"]["CartPole-v1"]
    expected = min(c["variance_ratio_per_seed"]) > 1.0 and (
        c["auc_difference"] > 2 * c["auc_difference_se"])
    assert saved["verdict"]["holds"] is expected
    assert f"{c['auc_difference']:+.1f} ± {c['auc_difference_se']:.1f}" in saved["verdict"]["line"]


def _run(var_ratio_seeds, auc_diff, se):
    return {"comparison": {"CartPole-v1": {
        "variance_ratio_per_seed": var_ratio_seeds, "variance_ratio": 2.0,
        "cross_run_variance_ratio": 1.5,
        "auc_none": 100.0, "auc_learned": 100.0 + auc_diff, "auc_difference": auc_diff,
        "auc_difference_se": se, "final_none": 100.0, "final_learned": 200.0}}}


@pytest.mark.parametrize("ratios,diff,se,holds", [
    ([3.0, 2.5, 4.0], 50.0, 10.0, True),
    ([3.0, 0.9, 4.0], 50.0, 10.0, False),   # one seed without variance reduction
    ([3.0, 2.5, 4.0], 15.0, 10.0, False),   # faster, but within 2 standard errors
    ([3.0, 2.5, 4.0], -50.0, 10.0, False),  # slower
])
def test_verdict_on_synthetic_numbers(ratios, diff, se, holds):
    assert rb.verdict(_run(ratios, diff, se))[0] is holds


def test_verdict_line_gives_the_numbers_it_compared():
    line = rb.verdict(_run([3.0, 2.5, 4.0], 15.0, 10.0))[1]
    assert line.startswith("seed 004 DOES NOT HOLD")
    assert "per seed 2.5–4.0, all > 1" in line and "difference +15.0 ± 10.0 (≤ 2 s.e.)" in line


def test_rejects_a_variant_set_without_the_compared_pair(tmp_path):
    with pytest.raises(ValueError, match="include"):
        rb.run(tmp_path, quick=True, variants=("actor_critic",))


def test_compare_uses_the_paired_variance_and_skips_zero_variance_logs():
    """Two seeds × three logs; the second seed's first log has zero variance (a deterministic
    policy) and is left out of its geometric mean instead of making it infinite."""
    learned = {"grad_variance": [[1.0, 2.0, 4.0], [0.0, 1.0, 1.0]],
               "grad_variance_no_baseline": [[4.0, 8.0, 16.0], [0.0, 2.0, 8.0]],
               "eval_return": [[10.0, 20.0, 30.0], [10.0, 30.0, 50.0]]}
    none = {"grad_variance": [[2.0, 2.0, 2.0], [3.0, 3.0, 3.0]],
            "eval_return": [[10.0, 10.0, 10.0], [10.0, 20.0, 30.0]]}
    c = rb.compare(none, learned)
    assert c["variance_ratio_per_seed"] == pytest.approx([4.0, 4.0])      # sqrt(2 · 8) = 4
    assert c["variance_ratio"] == pytest.approx(4.0)
    assert c["auc_learned"] == pytest.approx(25.0) and c["auc_none"] == pytest.approx(15.0)
    assert c["final_learned"] == pytest.approx(40.0) and c["final_none"] == pytest.approx(20.0)


@pytest.mark.parametrize("quick,expected", [(True, {rb.NONE, rb.LEARNED}),
                                            (False, {v[0] for v in rb.VARIANTS})])
def test_quick_budget_trains_the_compared_pair_and_the_full_one_every_variant(
        tmp_path, monkeypatch, quick, expected):
    """Which variants each budget trains (training replaced by fixed curves: 2 seeds × 3 logs)."""
    trained = []

    def fake_train(agent, overrides, env_id, sizes, seed):
        trained.append((agent, overrides.get("baseline"), env_id))
        curve = [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]]
        return {"env_steps": [1, 2, 3], "eval_return": curve, "grad_variance": curve,
                "grad_variance_no_baseline": curve, "compile_seconds": 0.0, "train_seconds": 0.0}

    monkeypatch.setattr(rb, "train_variant", fake_train)
    results = rb.run(tmp_path, quick=quick, envs=("CartPole-v1",), num_seeds=2)
    assert set(results["runs"]["CartPole-v1"]) == expected
    assert len(trained) == len(expected)
