"""experiments.reinforce_baselines (seed 004) runs end to end and decides its verdict correctly."""

import json

import pytest

from experiments import reinforce_baselines as rb


def test_runs_end_to_end_with_tiny_budget(tmp_path):
    results = rb.run(tmp_path, quick=True, seed=0, envs=("CartPole-v1",),
                     variants=(rb.NONE, rb.LEARNED), num_seeds=2, total_steps=8_000)
    for name in rb.FIGURES + ("reinforce_baselines.json",):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "reinforce_baselines.json").read_text())
    assert set(saved["runs"]["CartPole-v1"]) == {rb.NONE, rb.LEARNED}
    assert "| env |" in rb.markdown(results)
    assert isinstance(results["verdict"]["holds"], bool)


def _run(var_ratio_seeds, auc_diff, se):
    return {"comparison": {"CartPole-v1": {
        "variance_ratio_per_seed": var_ratio_seeds, "variance_ratio": 2.0,
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


def test_rejects_a_variant_set_without_the_compared_pair(tmp_path):
    with pytest.raises(ValueError, match="include"):
        rb.run(tmp_path, quick=True, variants=("actor_critic",))
