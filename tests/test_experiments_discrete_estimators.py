"""experiments.discrete_estimators at toy sizes, and its verdict functions on hand-made numbers on
both sides of each rule."""

import json
import subprocess
import sys
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradest
from experiments import discrete_estimators as de, gumbel

TINY = dict(toy_steps=4, toy_eval_every=2, toy_samples=16, num_seeds=2, latent_bits=3,
            latent_classes=8, hidden=4, evaluations=6, train_steps=4, batch_size=2, eval_every=2,
            eval_samples=2)


def test_toy_and_vae_pieces_run_at_toy_sizes():
    """One estimator through (a) and (b)'s compiled pieces: the toy's exact gradient at θ = 0 is
    ¼(1 − 2t); ARM's variance there is finite and positive; the VAE chunk and evaluator return one
    number per seed."""
    sizes = de.Sizes(**TINY)
    m = de.make_toy_run(gradest.arm(), sizes)(jax.random.split(jax.random.key(0, impl="rbg"), 2))
    # Step 0 and the end of the warm-up are both at θ = 0; then Adam moves θ.
    np.testing.assert_allclose(m["exact"][:, :2], 0.25 * (1 - 2 * de.TARGET), rtol=1e-4)
    assert m["p"].shape == (2, 4) and np.all(m["variance"][:, :2] > 0)
    x_train, x_test = gumbel.load_binary_digits(jax.random.key(0))
    model = de.DiscreteVAE("binary", 3, 4, int(x_train.shape[1]))
    keys = jax.random.split(jax.random.key(1, impl="rbg"), 2)
    params = jax.vmap(model.init)(keys)
    est = gradest.disarm()
    chunk = de.make_vae_chunk(model, est, x_train, sizes)
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (2,) + jnp.shape(x)), est.init())
    opt = jax.vmap(optax.adam(de.VAE_LEARNING_RATE).init)(params)
    (new_params, _, _), log_var = chunk((params, opt, states), keys)
    assert log_var.shape == (2,) and np.all(np.isfinite(log_var))
    elbo = de.make_evaluator(model, x_test, sizes)(new_params, keys)
    assert elbo.shape == (2,) and np.all(elbo < 0)



@pytest.mark.parametrize("optimizations_off", [False, True])
def test_toy_variance_below_float32_resolution_is_reported_at_the_floor(monkeypatch,
                                                                         optimizations_off):
    """DisARM at θ = 0 returns the exact gradient on every draw, so what the toy measures there
    is rounding: 2e-18 with XLA's optimizations, exactly 0 without (log₁₀ 0 used to crash the
    quick run). Under both compiler settings it is reported at the float32 floor with a zero
    standard error and a bias z below 4 (the full budget's 2000 draws × 5 seeds: a float32
    mean's rounding read as bias z 15 and 9 with the standard error floored at √(floor/n)), and
    ARM's variance, well above the floor, is reported as measured."""
    monkeypatch.setattr(de, "toy_estimators",
                        lambda key: {"arm": gradest.arm(), "disarm": gradest.disarm()})
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", optimizations_off)
    try:
        sizes = de.Sizes(**dict(TINY, toy_samples=2000, num_seeds=5))
        toy = de.toy_experiment(jax.random.key(0), sizes, lambda line: None)["estimators"]
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
    dis, arm = toy["disarm"], toy["arm"]
    assert dis["variance_init_measured"] < de.TOY_VARIANCE_RESOLUTION
    assert not dis["variance_init_resolved"] and dis["variance_init_se"] == 0.0
    assert dis["log10_variance_init"] == pytest.approx(math.log10(de.TOY_VARIANCE_RESOLUTION))
    assert abs(dis["bias_zscore_init"]) < 4   # unbiased: rounding is not read as bias
    assert arm["variance_init_resolved"] and arm["variance_init"] == arm["variance_init_measured"]
    assert arm["variance_init"] > 1e3 * de.TOY_VARIANCE_RESOLUTION
    assert "≤" in de._at_resolution(dis, dis["variance_init"])

@pytest.mark.slow
def test_run_end_to_end(tmp_path):
    results = de.run(tmp_path, quick=True, seed=0, **TINY)
    for name in ("discrete_estimators.json", *de.FIGURES):
        assert (tmp_path / name).stat().st_size > 0, name
    written = json.loads((tmp_path / "discrete_estimators.json").read_text())
    assert written["verdict"]["line"] == results["verdict"]["line"]
    toy = results["toy"]["estimators"]
    assert set(toy) == set(de.toy_estimators(jax.random.key(0)))
    # θ starts at 0: the exact gradient is ¼(1 − 2t) for every estimator.
    for r in toy.values():
        assert math.isclose(r["exact_grad_init"], 0.25 * (1 - 2 * de.TARGET), rel_tol=1e-4)
        assert np.shape(r["p_curve"]) == (TINY["num_seeds"], 4)
    vae = results["vae"]
    assert {"arm", "disarm"} <= set(vae["binary"]) and "unordered_set" in vae["categorical"]
    assert "arm" not in vae["categorical"] and "unordered_set" not in vae["binary"]
    # The quick budget leaves the biased Gumbel estimators out of the VAEs, not out of the toy.
    assert all(r["unbiased"] for latent in ("binary", "categorical") for r in vae[latent].values())
    assert {"gumbel_rao", "straight_through"} <= set(toy)
    for latent in ("binary", "categorical"):
        for r in vae[latent].values():
            # Equal function evaluations per data point and step for every estimator.
            assert r["calls"] * r["evaluations_per_call"] == TINY["evaluations"]
            assert np.all(np.isfinite(r["elbo_curve"])) and np.all(np.isfinite(r["log10_variance_curve"]))
    assert de.markdown(results).count("\n|") > 15


def test_vae_estimators_are_the_unbiased_ones_without_the_biased_gumbel_estimators():
    for latent, unbiased in (("binary", {"reinforce_loo", "arm", "disarm", "rebar", "relax"}),
                             ("categorical", {"reinforce_loo", "rebar", "relax", "unordered_set"})):
        every = de.vae_estimators(latent, jax.random.key(0), de.QUICK)
        assert set(every) == unbiased | {"gumbel_rao", "straight_through"}
        assert {n for n, e in every.items() if e.traits.unbiased} == unbiased
        assert set(de.vae_estimators(latent, jax.random.key(0), de.QUICK, biased=False)) == unbiased


def test_uneven_budget_is_rejected():
    with pytest.raises(ValueError, match="multiple"):
        de.vae_estimators("binary", jax.random.key(0), de.Sizes(evaluations=5))


def test_unordered_set_of_every_class_is_rejected():
    """With evaluations ≥ latent_classes the set is the whole support: the exact gradient, whose
    measured variance is 0 or rounding (log₁₀ −∞ broke a 6-of-6 run), not an estimator's."""
    de.vae_estimators("categorical", jax.random.key(0), de.Sizes(latent_classes=7, evaluations=6))
    for classes in (6, 4):
        with pytest.raises(ValueError, match="every class"):
            de.vae_estimators("categorical", jax.random.key(0),
                              de.Sizes(latent_classes=classes, evaluations=6))
    # The binary VAE has no unordered set: its sizes are not checked against latent_classes.
    de.vae_estimators("binary", jax.random.key(0), de.Sizes(latent_classes=4, evaluations=6))


def test_run_refuses_bad_vae_sizes_before_the_toy(monkeypatch, tmp_path):
    def toy_ran(*args, **kwargs):
        raise AssertionError("the toy ran before the VAE sizes were checked")

    monkeypatch.setattr(de, "toy_experiment", toy_ran)
    for bad, message in (({"latent_classes": 6}, "every class"), ({"evaluations": 5}, "multiple")):
        with pytest.raises(ValueError, match=message):
            de.run(tmp_path, quick=True, seed=0, **{**TINY, **bad})


# --------------------------------------------------------------------------------------------
# Verdict functions on hand-made numbers.


def test_compare_on_both_sides_of_the_rule():
    assert de.compare(1.0, 2.0, se=0.4) == "holds"      # 1 below by 2.5 SE
    assert de.compare(1.0, 2.0, se=0.6) == "tie"        # 1 below by 1.7 SE
    assert de.compare(2.0, 1.0, se=0.6) == "tie"
    assert de.compare(2.0, 1.0, se=0.4) == "reversed"


def test_lowest_variance_ignores_biased_estimators():
    rows = {"a": {"unbiased": True, "v": 2.0}, "b": {"unbiased": True, "v": 1.0},
            "st": {"unbiased": False, "v": -5.0}}
    assert de.lowest_variance(rows, "v") == "b"
    rows["b"]["v"] = 3.0
    assert de.lowest_variance(rows, "v") == "a"


def _toy_row(log_var, unbiased=True, solved=1.0, evaluations=1):
    """Per sample ``log_var``; per evaluation, log_var + log10(evaluations)."""
    return {"unbiased": unbiased, "log10_variance_init": log_var, "log10_variance_init_se": 0.01,
            "log10_variance_per_evaluation_init": log_var + math.log10(evaluations),
            "log10_variance_per_evaluation_init_se": 0.01, "solved_fraction": solved}


def _vae_row(per_seed, unbiased=True):
    return {"unbiased": unbiased, "log10_variance": float(np.mean(per_seed)),
            "log10_variance_per_seed": per_seed}


def synthetic_results(**vae_changes):
    """Orderings that hold everywhere: DisARM < ARM, RELAX < REBAR < REINFORCE-LOO."""
    toy = {"reinforce": _toy_row(-3.0, solved=0.0), "reinforce_loo": _toy_row(-6.0), "arm": _toy_row(-6.5), "disarm": _toy_row(-9.0),
           "rebar": _toy_row(-7.0), "relax": _toy_row(-7.5),
           "straight_through": _toy_row(-12.0, unbiased=False, solved=0.0)}
    binary = {"reinforce_loo": _vae_row([3.0, 3.1, 2.9]), "arm": _vae_row([2.5, 2.6, 2.4]),
              "disarm": _vae_row([2.0, 2.1, 1.9]), "rebar": _vae_row([2.8, 2.9, 2.7]),
              "relax": _vae_row([2.2, 2.3, 2.1])}
    categorical = {"reinforce_loo": _vae_row([3.0, 3.1, 2.9]), "rebar": _vae_row([2.8, 2.9, 2.7]),
                   "relax": _vae_row([2.7, 2.8, 2.6]), "unordered_set": _vae_row([2.0, 2.2, 2.1])}
    vae = {"binary": binary, "categorical": categorical}
    for path, per_seed in vae_changes.items():
        latent, name = path.split("__")
        vae[latent][name] = _vae_row(per_seed)
    return {"toy": {"estimators": toy}, "vae": vae}


def test_verdict_holds_when_every_ordering_holds():
    holds, line = de.verdict(synthetic_results())
    assert holds and line.startswith("paper orderings HOLD")
    assert "toy disarm" in line and "binary VAE disarm" in line
    assert "categorical VAE unordered_set" in line
    assert "solved (σ(θ) < 0.05 on every seed) by: reinforce_loo, arm, disarm, rebar, relax" in line


def test_verdict_tolerates_a_tie():
    # RELAX's variance equals REBAR's up to seed noise in the categorical VAE: not a reversal.
    holds, line = de.verdict(synthetic_results(categorical__relax=[2.9, 2.7, 2.8]))
    assert holds and "tie" in line


@pytest.mark.parametrize("change", [
    {"binary__disarm": [2.7, 2.8, 2.6]},            # DisARM above ARM in every seed
    {"categorical__rebar": [3.3, 3.4, 3.2]},        # REBAR above REINFORCE-LOO
    {"binary__relax": [3.0, 3.1, 2.9]},             # RELAX above REBAR
])
def test_verdict_fails_when_an_ordering_is_reversed(change):
    holds, line = de.verdict(synthetic_results(**change))
    assert not holds
    assert line.startswith("paper orderings FAIL") and "reversed" in line


@pytest.mark.parametrize("name,log_var", [("disarm", -6.0), ("rebar", -2.0)])
def test_verdict_fails_on_a_reversed_toy_ordering(name, log_var):
    """DisARM above ARM, or REBAR above plain REINFORCE, by far more than 2 SE on the toy."""
    results = synthetic_results()
    results["toy"]["estimators"][name] = _toy_row(log_var)
    holds, line = de.verdict(results)
    assert not holds and "reversed" in line


def test_toy_orderings_compare_per_sample():
    """REBAR with plain REINFORCE's per-sample variance (its best on this toy, η = 0) ties, though
    per evaluation (× 2) it is 0.3 above by 30 SE; a per-sample excess of 3 SE reverses. The
    per-evaluation numbers still pick the lowest-variance estimator."""
    results = synthetic_results()
    toy = results["toy"]["estimators"]
    toy["reinforce"] = _toy_row(-1.806)
    toy["rebar"] = _toy_row(-1.806, evaluations=2)
    toy["relax"] = _toy_row(-4.5, evaluations=2)
    holds, line = de.verdict(results)
    assert holds and "toy: disarm" in line and "rebar -1.806 vs reinforce -1.806" in line
    toy["rebar"] = _toy_row(-1.806 + 3 * 0.01 * math.sqrt(2), evaluations=2)
    holds, line = de.verdict(results)
    assert not holds and "vs reinforce -1.806 (±0.014: reversed)" in line
    toy["disarm"] = _toy_row(-4.0, evaluations=2)                   # per evaluation: -3.70
    toy["reinforce_loo"] = _toy_row(-4.0, evaluations=2)
    toy["arm"] = _toy_row(-3.9, evaluations=2)
    assert "Lowest variance per evaluation (unbiased): toy relax" in de.verdict(results)[1]


def test_cli_help_documents_every_flag():
    proc = subprocess.run([sys.executable, "-m", "experiments.discrete_estimators", "--help"],
                          capture_output=True, text=True, timeout=120)
    for name in ["seed", "output_dir", "overwrite", "quick", "full",
                 *de.Sizes.__dataclass_fields__]:
        assert f"--{name}" in proc.stdout or f"--[no]{name}" in proc.stdout, name
