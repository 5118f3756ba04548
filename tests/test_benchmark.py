"""The estimator benchmark's bookkeeping with stand-in functions and a stand-in clock: the sides
of a ratio are timed in the same rounds, in turn with the order reversed every other round, and
the median and range of the per-round ratios are right."""

import pytest

from experiments import _common, benchmark


class Clock:
    """A clock that a stand-in side advances by its cost when called."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_timed_rounds_alternates_and_takes_each_rounds_median():
    clock, calls = Clock(), []
    # Per call: "a" costs 3, 1, 2 seconds in turn within each round (median 2 in the first
    # round, then scaled by the round number); "b" always 1.
    a_costs = iter([3.0, 1.0, 2.0, 6.0, 2.0, 4.0, 9.0, 3.0, 6.0, 12.0, 4.0, 8.0, 15.0, 5.0, 10.0])

    def side(name, costs):
        def fn():
            calls.append(name)
            clock.now += next(costs)
        return fn

    sides = {"a": (side("a", a_costs), 3), "b": (side("b", iter([1.0] * 15)), 3)}
    per_round = benchmark.timed_rounds(sides, rounds=5, clock=clock)
    # a's three calls then b's in even rounds, b's then a's in odd ones.
    assert calls == (["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3) * 2 + ["a"] * 3 + ["b"] * 3
    assert per_round == {"a": [2.0, 4.0, 6.0, 8.0, 10.0], "b": [1.0] * 5}
    row = benchmark.ratio_row(per_round, "a", "b")
    assert row["a_over_b"] == 6.0
    assert row["a_over_b_range"] == [2.0, 10.0]
    assert row["a_over_b_per_round"] == [2.0, 4.0, 6.0, 8.0, 10.0]
    with pytest.raises(ValueError, match="rounds"):
        benchmark.timed_rounds(sides, rounds=0, clock=clock)


def test_ratio_summary_of_an_even_number_of_rounds():
    summary = _common.ratio_summary([1.44, 1.14, 1.30, 1.20])
    assert summary["median"] == pytest.approx(1.25)       # between 1.20 and 1.30
    assert (summary["min"], summary["max"]) == (1.14, 1.44)
    with pytest.raises(ValueError):
        _common.ratio_summary([])


def test_in_turn_reverses_the_order_every_other_round():
    calls = []
    sides = {n: (lambda n=n: calls.append(n) or n.upper()) for n in ("x", "y", "z")}
    assert _common.in_turn(sides, 0) == {"x": "X", "y": "Y", "z": "Z"}
    assert _common.in_turn(sides, 1) == {"z": "Z", "y": "Y", "x": "X"}
    assert calls == ["x", "y", "z", "z", "y", "x"]


def test_the_default_is_at_least_five_rounds():
    assert benchmark.FLAGS["rounds"].default >= 5


def test_estimator_suite_covers_every_estimator_past_the_seeds():
    """Each estimator family of gradest's catalogue past the seeds has a row (issue: every new
    estimator timed against its hand-written floor), on the problems its traits accept."""
    from experiments import benchmark
    cases = benchmark.estimator_cases()
    names = {name.split("[")[0] for name, _, _ in cases}
    assert {"arm", "disarm", "rebar", "relax", "gumbel_rao", "unordered_set", "measure_valued",
            "control_variate", "delta_method"} <= names
    import gradest
    for name, estimator, (params, make_dist, _) in cases:
        kind = "discrete" if gradest.is_discrete(make_dist(params)) else "continuous"
        gradest.check_compatible(estimator, kind=kind, differentiable_f=True)
