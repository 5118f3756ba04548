"""experiments.variance and experiments.report run end to end and decide verdicts correctly."""

import json
import math
import subprocess
import sys
import types

import jax
import pytest

from experiments import report, variance


@pytest.mark.parametrize("parts", [("k",), pytest.param(variance.PARTS, marks=pytest.mark.slow)],
                         ids=["k", "all"])
def test_variance_runs_end_to_end_and_writes_its_files(tmp_path, parts):
    results = variance.run(tmp_path, quick=True, seed=0, problems=("cos",), k_values=(1.0, 5.0),
                           parts=parts, num_samples=2_000, repeats=20, other_samples=2_000,
                           optimal_draws=1_024)
    figures = variance.FIGURES if parts == variance.PARTS else ("variance_vs_k.png",)
    for name in figures + ("variance.json",):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "variance.json").read_text())
    # k values × estimators × coordinates
    assert len(saved["variance_vs_k"]) == 2 * len(variance.ESTIMATORS) * 2
    for r in saved["variance_vs_k"]:
        # 2k samples: the Monte Carlo variance is within a factor of 2 of the quadrature value.
        assert 0.5 < r["mc_variance"] / r["exact_variance"] < 2.0, r
    assert "| problem |" in variance.markdown(results)


def _synthetic(pathwise_sq, pathwise_cos, pathwise_other, se=0.1):
    """Exact variances 1 for the score function on (x − k)² and cos(kx) at k = 1, 3, and for the
    score function with the leave-one-out baseline measured as 1 ± ``se`` on gamma, beta and
    student_t; pathwise's given (``pathwise_other``: one per problem)."""
    rows = []
    for problem, pw in (("shifted_square", pathwise_sq), ("cos", pathwise_cos)):
        for k in (1.0, 3.0):
            for j in ("mu", "sigma"):
                rows.append(dict(problem=problem, k=k, coordinate=j, estimator="score_function",
                                 exact_variance=1.0))
                rows.append(dict(problem=problem, k=k, coordinate=j, estimator="pathwise",
                                 exact_variance=pw if k == 3.0 or problem != "cos" else 0.5))
    others = []
    for name, pw in zip(("gamma", "beta", "student_t"), pathwise_other):
        others += [dict(problem=name, estimator="pathwise (implicit)", total_variance=pw,
                        total_variance_se=se),
                   dict(problem=name, estimator="score_function+loo", total_variance=1.0,
                        total_variance_se=se)]
    return {"variance_vs_k": rows, "full_vs_diagonal": [], "implicit_vs_score": others,
            "sizes": {"num_samples": 100, "other_samples": 100}, "mu": 1.0, "sigma": 1.0}


@pytest.mark.parametrize("sq,cos,other,holds", [
    (0.5, 2.0, (0.5, 0.5, 0.5), True),    # wins on the usual problems, loses on cos: the claim
    (0.5, 2.0, (0.5, 0.5, 0.9), True),    # one difference within its standard errors: usually
    (0.5, 0.5, (0.5, 0.5, 0.5), False),   # no counter-example
    (2.0, 2.0, (0.5, 0.5, 0.5), False),   # loses on (x - k)^2
    (0.5, 2.0, (0.5, 0.5, 1.5), False),   # significantly higher on one implicit problem
    (0.5, 2.0, (0.5, 0.9, 0.9), False),   # lower on only one of three: not "usually"
])
def test_variance_verdict_on_synthetic_numbers(sq, cos, other, holds):
    assert variance.verdict(_synthetic(sq, cos, other))[0] is holds


def test_variance_verdict_lists_every_counter_example_with_its_numbers():
    holds, line = variance.verdict(_synthetic(0.5, 2.0, (0.5, 0.5, 0.5)))
    assert holds
    # cos at k = 3, both coordinates: pathwise 2 against 1; none cut off.
    assert "cos k=3 ∂mu (2 vs 1); cos k=3 ∂sigma (2 vs 1)" in line and "…" not in line
    assert "gamma 0.5 ± 0.1 vs 1 ± 0.1 (z = 3.5: lower)" in line


def test_variance_cli_rejects_bad_input_with_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.variance", f"--output_dir={tmp_path}",
                           "--problems=sine"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown problem" in proc.stderr
    (tmp_path / "old.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "experiments.variance", f"--output_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr


def _fake_module(name, holds=True, fail=False):
    mod = types.ModuleType(f"experiments.{name}")

    def run(out, *, quick, seed):
        if fail:
            raise RuntimeError("boom")
        out.mkdir(parents=True, exist_ok=True)
        (out / "fig.png").write_bytes(b"png")
        return {"x": 1.0}

    mod.run = run
    mod.verdict = lambda r: (holds, f"x = {r['x']}")
    mod.markdown = lambda r: "| a |\n|---|\n| 1 |"
    if holds:
        mod.RULE = "Holds when x is 1."
    return mod


def test_report_renders_every_claim_and_reports_failures(tmp_path, monkeypatch):
    fakes = {"fake_ok": _fake_module("fake_ok"), "fake_no": _fake_module("fake_no", holds=False),
             "fake_fail": _fake_module("fake_fail", fail=True)}
    for name, mod in fakes.items():
        monkeypatch.setitem(sys.modules, f"experiments.{name}", mod)
    claims = (report.Claim("100", "A holds.", "fake_ok"), report.Claim("101", "B fails.", "fake_no"),
              report.Claim("102", "C breaks.", "fake_fail"))
    monkeypatch.setattr(report, "CLAIMS", claims)
    entries = report.run(tmp_path, quick=True, seed=0)
    assert [entries[c.seed]["status"] for c in claims] == ["ok", "ok", "failed"]
    text = (tmp_path / "report.md").read_text()
    assert "**holds**" in text and "**does not hold**" in text and "**not run**" in text
    assert "![fake_ok/fig.png](fake_ok/fig.png)" in text and "| a |" in text
    assert "RuntimeError: boom" in text
    # The header: date, machine, jax version, run time.
    assert "- Date: 20" in text and " cores; JAX devices: cpu" in text
    assert f"jax {jax.__version__}" in text and "run time" in text
    # Each verdict with its rule and the numbers it compared; a module without a RULE says so.
    assert "**Rule.** Holds when x is 1." in text and "**Numbers compared.** x = 1.0" in text
    assert f"**Rule.** {report.NO_RULE}" in text
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["machine"]["jax"] == jax.__version__ and saved["claims"]["100"]["holds"] is True
    with pytest.raises(FileExistsError):
        report.run(tmp_path, quick=True, seed=0)


def test_optimal_baseline_table_matches_quadrature_and_pooled_matches_no_baseline():
    """The optimal-baseline table (fixed seed, 2^14 draws per estimator, cos(x) under N(1, 1),
    where plain optimal(K) loses to no baseline): the Monte Carlo per-draw variances of no
    baseline and of the exact b* lie within 4 of their standard errors of the quadrature values;
    plain optimal(8) exceeds no baseline by more than 4 combined standard errors (the old loss);
    the pooled optimal(8) is at most no baseline's variance plus 4 combined standard errors."""
    rows = variance.optimal_vs_exact(jax.random.key(0), 1 << 14, problems=(("cos", 1.0),),
                                     k_values=(8,))
    by = {(r["baseline"], r["coordinate"]): r for r in rows}
    for name in ("none", "exact b*"):
        for j in ("mu", "sigma"):
            r = by[(name, j)]
            assert abs(r["mc_variance"] - r["exact_variance"]) < 4 * r["mc_variance_se"], r
    for j in ("mu", "sigma"):
        none, plain, pooled = (by[(n, j)] for n in ("none", "optimal(K)", "optimal(K) pooled"))
        se = lambda a, b: math.hypot(a["mc_variance_se"], b["mc_variance_se"])  # noqa: E731
        assert plain["mc_variance"] > none["mc_variance"] + 4 * se(plain, none), (plain, none)
        assert pooled["mc_variance"] <= none["mc_variance"] + 4 * se(pooled, none), (pooled, none)
