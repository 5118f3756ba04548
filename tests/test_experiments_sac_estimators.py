"""Seed 002's SAC estimator comparison: a tiny end-to-end run and the verdict on synthetic numbers."""

import numpy as np
import pytest
import scipy.stats

from experiments import sac_estimators as se

TINY = dict(actor_widths=(8,), critic_widths=(8,), batch_size=8, warmup_steps=16,
            buffer_size=64, eval_episodes=2)


# Tiny programs compiled once each: XLA's optimizations would cost more than they save.
pytestmark = pytest.mark.usefixtures("fast_compiles")


@pytest.mark.slow
def test_run_end_to_end_with_tiny_sizes(tmp_path):
    results = se.run(tmp_path / "out", num_seeds=2, total_steps=48, timing_updates=3,
                     variants=se.VERDICT_VARIANTS, config_overrides=TINY, log=lambda *_: None)
    assert set(results["variants"]) == set(se.VERDICT_VARIANTS)
    for v in results["variants"].values():
        assert len(v["final_return_per_seed"]) == 2
        assert np.all(np.isfinite(v["final_return_per_seed"]))
        assert v["seconds_per_update"] > 0
        assert v["update_cost"]["flops"] > 0 and v["update_cost"]["bytes_accessed"] > 0
    # The verdict of the run's own numbers, by the claim's rule with scipy's Welch t-test:
    # score_function+V like pathwise (|t| < 2) at < 1.5× its FLOPs, and better than no baseline.
    v = results["variants"]

    def welch_t(a, b):
        return scipy.stats.ttest_ind(v[a]["final_return_per_seed"],
                                     v[b]["final_return_per_seed"], equal_var=False).statistic

    expected = bool(abs(welch_t("score_function+V", "pathwise")) < 2
                    and v["score_function+V"]["update_cost"]["flops"]
                    < 1.5 * v["pathwise"]["update_cost"]["flops"]
                    and welch_t("score_function+V", "score_function") > 2)
    # One action per state against K scored by the score function: more counted work.
    assert v["score_function"]["update_cost"]["flops"] > v["pathwise"]["update_cost"]["flops"]
    holds, line = se.verdict(results)
    assert holds is expected and results["verdict"]["holds"] is expected
    assert line.startswith("seed 002 " + ("HOLDS" if expected else "DOES NOT FULLY HOLD"))
    table = se.markdown(results)
    assert "score_function+V" in table and "ms / update" in table and "MFLOP" in table
    for name in se.FIGURES:
        assert (tmp_path / "out" / name).exists()
    assert (tmp_path / "out" / "verdict.md").exists()


def _variant(returns, mflop, ms=1.0):
    returns = np.asarray(returns, float)
    return {"final_return_per_seed": returns.tolist(), "final_return_mean": returns.mean(),
            "final_return_se": returns.std(ddof=1) / np.sqrt(returns.size),
            "update_cost": {"flops": mflop * 1e6, "bytes_accessed": mflop * 3e5,
                            "transcendentals": 0.0},
            "seconds_per_update": None if ms is None else ms * 1e-3, "grad_variance_median": 1.0,
            "grad_snr_median": 0.5, "actor_learning_rate": 3e-4, "compile_seconds": 10.0,
            "train_seconds": 20.0}


def _results(pathwise, with_v, without, cost=1.0, seconds_cost=1.0):
    """``cost``: the score function's FLOPs per update over pathwise's; ``seconds_cost``: the
    same for its wall-clock time, which the verdict must ignore."""
    return {"sizes": {"total_steps": 10_000, "num_seeds": len(pathwise)},
            "variants": {"pathwise": _variant(pathwise, 40.0),
                         "score_function+V": _variant(with_v, 40.0 * cost, seconds_cost),
                         "score_function": _variant(without, 40.0 * cost, seconds_cost),
                         "zeroth_order": _variant(without, 40.0)}}


def test_verdict_on_synthetic_numbers():
    good = [-150, -160, -155, -145, -150, -158, -152, -149]
    bad = [-1200, -1300, -1250, -1100, -1400, -1350, -1280, -1220]
    holds, line = se.verdict(_results(good, [x - 3 for x in good], bad))
    assert holds and "HOLDS" in line and "zeroth_order" in line
    # The score function far below pathwise: claim (i) fails.
    assert not se.verdict(_results(good, bad, bad))[0]
    # Same returns but 1.6 times the FLOPs: claim (ii) fails, at 1.4 times it holds, whatever
    # the seconds say.
    assert not se.verdict(_results(good, good, bad, cost=1.6, seconds_cost=0.5))[0]
    holds, line = se.verdict(_results(good, good, bad, cost=1.4, seconds_cost=5.0))
    assert holds and "56.0 vs 40.0 MFLOP per update: 1.40× < 1.5×" in line
    # No baseline just as good: claim (iii) fails.
    assert not se.verdict(_results(good, good, good))[0]


def test_an_untimed_budget_gives_the_same_verdict_and_says_not_timed():
    """The quick budget times no update (seconds None): the verdict is the timed one's, and the
    table says "not timed" where the timed table gives milliseconds."""
    good = [-150, -160, -155, -145, -150, -158, -152, -149]
    bad = [-1200, -1300, -1250, -1100, -1400, -1350, -1280, -1220]
    timed = _results(good, good, bad, cost=1.4)
    untimed = _results(good, good, bad, cost=1.4, seconds_cost=None)
    for v in untimed["variants"].values():
        v["seconds_per_update"] = None
    assert se.verdict(untimed) == se.verdict(timed)
    assert se.QUICK.timing_updates == 0 and se.FULL.timing_updates > 0
    # ms per update, then compile and train seconds.
    assert "| 1.00 | 10.0 | 20.0 |" in se.markdown(timed) and "not timed" not in se.markdown(timed)
    assert se.markdown(untimed).count("| not timed | 10.0 | 20.0 |") == len(untimed["variants"])
