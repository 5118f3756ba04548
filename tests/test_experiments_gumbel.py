"""experiments.gumbel (seed 001) end to end at toy sizes, its verdict on synthetic numbers, its
command line, and the shared experiment helpers of experiments._common."""

import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import _common, gumbel

TINY = dict(num_classes=4, num_draws=2_000, num_temperatures=3, grad_samples=200, loo_samples=2,
            latent_vars=2, latent_classes=3, hidden=8, train_steps=4, batch_size=4, eval_every=2,
            eval_samples=2)


@pytest.mark.slow
def test_run_end_to_end(tmp_path):
    results = gumbel.run(tmp_path, quick=True, seed=0, **TINY)
    for name in ("gumbel.json", *gumbel.FIGURES):
        assert (tmp_path / name).stat().st_size > 0, name
    assert gumbel.markdown(results).count("\n|") > 2 * TINY["num_temperatures"]
    written = json.loads((tmp_path / "gumbel.json").read_text())
    assert written["verdict"]["line"] == results["verdict"]["line"]
    assert written["sizes"]["grad_samples"] == TINY["grad_samples"]
    bv = results["bias_variance"]
    assert len(bv["gumbel_softmax"]["relative_bias"]) == TINY["num_temperatures"]
    assert np.isclose(sum(results["gumbel_max"]["frequencies"]), 1.0)
    assert set(results["vae"]["final_elbo"]) == {"gumbel_softmax", "straight_through",
                                                 "score_function"}
    assert len(results["vae"]["steps"]) == TINY["train_steps"] // TINY["eval_every"] + 1
    assert all(np.isfinite(c).all() for c in results["vae"]["heldout_elbo"].values())


def test_run_rejects_unknown_size(tmp_path):
    with pytest.raises(TypeError, match="num_draw"):
        gumbel.run(tmp_path, quick=True, seed=0, num_draw=10)


def test_exact_gradient_matches_finite_differences():
    params = gumbel.cat_params(5)
    value, grad = gumbel.exact_value_and_grad(params)
    h = 1e-3
    for j in range(5):
        shift = np.zeros(5, np.float32)
        shift[j] = h
        up = gumbel.exact_value_and_grad({"logits": params["logits"] + shift})[0]
        down = gumbel.exact_value_and_grad({"logits": params["logits"] - shift})[0]
        assert np.isclose((up - down) / (2 * h), grad["logits"][j], atol=1e-3)
    assert np.isfinite(value)


def test_kl_to_uniform_is_exact():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    expected = 0.5 * np.log(1.5) + 2 * 0.25 * np.log(0.75)  # second variable: KL = 0
    assert np.isclose(gumbel.kl_to_uniform(logits), expected, atol=1e-6)


def synthetic_results(**changes):
    """Numbers with every part of seed 001's claim holding; ``changes`` breaks one."""
    results = {
        "gumbel_max": {"p_value": 0.4},
        "bias_variance": {
            "temperatures": [0.1, 1.0, 5.0],
            "gumbel_softmax": {"relative_bias": [0.1, 0.5, 0.9],
                               "relative_bias_se": [0.01, 0.01, 0.01],
                               "total_variance": [5.0, 0.1, 1e-3],
                               "total_variance_se": [0.5, 0.01, 1e-4]},
            "score_function": {"max_abs_zscore": 1.5},
        },
        "vae": {"final_elbo": {"gumbel_softmax": -20.0, "straight_through": -20.5,
                               "score_function": -21.0},
                "gain_over_marginal": {"gumbel_softmax": 4.0, "straight_through": 3.5,
                                       "score_function": 3.0},
                "gain_over_marginal_se": {"gumbel_softmax": 0.2, "straight_through": 0.2,
                                          "score_function": 0.2},
                "marginal_elbo": -24.0, "best": "gumbel_softmax",
                "peak_elbo": {"gumbel_softmax": -19.5, "straight_through": -20.0,
                              "score_function": -20.5},
                "peak_step": {"gumbel_softmax": 10, "straight_through": 20, "score_function": 20},
                "best_gap": {"straight_through": 0.5, "score_function": 1.0},
                "best_gap_se": {"straight_through": 0.1, "score_function": 0.1}},
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = results
        for p in parents:
            node = node[p]
        node[leaf] = value
    return results


def test_verdict_holds_on_synthetic_numbers():
    holds, line = gumbel.verdict(synthetic_results())
    assert holds
    assert line.startswith("seed 001 HOLDS") and "best: gumbel_softmax" in line


@pytest.mark.parametrize("change", [
    {"gumbel_max__p_value": 1e-5},                                       # Gumbel-Max rejected
    {"bias_variance__gumbel_softmax__relative_bias": [0.9, 0.5, 0.1]},  # bias rises as τ falls
    {"bias_variance__gumbel_softmax__total_variance": [1e-3, 0.1, 5.0]},
    {"bias_variance__score_function__max_abs_zscore": 6.0},             # score function biased
    {"vae__gain_over_marginal": {"gumbel_softmax": 4.0, "straight_through": 3.5,
                                 "score_function": 0.3}},                 # one within 2 s.e.
    # The variance falls with τ, but the end points differ by less than 2 standard errors.
    {"bias_variance__gumbel_softmax__total_variance_se": [3.0, 0.01, 1.0]},
])
def test_verdict_fails_when_a_claim_breaks(change):
    holds, line = gumbel.verdict(synthetic_results(**change))
    assert not holds
    assert line.startswith("seed 001 FAILS")


def test_cli_refuses_non_empty_output_dir(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "experiments.gumbel", f"--output_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == _common.EXIT_OUTPUT_EXISTS
    assert proc.stderr.strip().splitlines()[-1].startswith("error: output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_cli_help_documents_every_flag():
    proc = subprocess.run([sys.executable, "-m", "experiments.gumbel", "--help"],
                          capture_output=True, text=True, timeout=120)
    for name in ["seed", "output_dir", "overwrite", "quick", *gumbel.Sizes.__dataclass_fields__]:
        assert f"--{name}" in proc.stdout or f"--[no]{name}" in proc.stdout, name


# Shared helpers (experiments._common).


def test_prepare_output_dir(tmp_path):
    out = _common.prepare_output_dir(tmp_path / "new" / "dir", overwrite=False)
    assert out.is_dir()
    assert _common.prepare_output_dir(out, overwrite=False) == out  # empty: fine
    (out / "x.json").write_text("{}")
    with pytest.raises(_common.OutputDirNotEmpty):
        _common.prepare_output_dir(out, overwrite=False)
    assert _common.prepare_output_dir(out, overwrite=True) == out


def test_output_dir_or_exit_exits_2(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        _common.output_dir_or_exit(tmp_path, overwrite=False)
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_write_json_is_atomic_and_converts_arrays(tmp_path):
    path = tmp_path / "r.json"
    _common.write_json(path, {"a": np.arange(3), "b": np.float32(0.5), "s": gumbel.QUICK})
    assert json.loads(path.read_text())["a"] == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind
    with pytest.raises(TypeError):
        _common.write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["b"] == 0.5  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
