r"""Seed 004: a value baseline cuts REINFORCE's gradient variance and speeds up learning.

    python -m experiments.reinforce_baselines --output_dir=results/reinforce_baselines
    python -m experiments.reinforce_baselines --quick --num_seeds=4

REINFORCE's actor gradient mean_t ∇ log π(a_t|s_t)(R_t − b(s_t)) is unbiased for any b that does
not depend on a_t; seed 004 says that b(s) = V(s) makes its variance much smaller, and
actor-critic replaces R_t by the TD target r + γV(s'). This module trains, on CartPole-v1 and
Acrobot-v1 with several seeds each at one budget, REINFORCE without a baseline, with a moving
average of returns, with a learned V(s), and actor-critic (the quick budget only the first and
the third, which the verdict compares), logging the greedy evaluation return
and the variance of the per-sample actor gradients across each update's batch
(``gradest.diagnostics``). Writes ``reinforce_baselines.json``, ``learning_curves.png`` and
``gradient_variance.png``.

The verdict compares REINFORCE with the learned baseline against REINFORCE without one, per
environment: (i) lower actor-gradient variance, measured paired: in the learned-V run, on the
same batch and parameters, the variance of the per-sample gradients (Â_i + b_i)∇log π (no
baseline) against Â_i∇log π (with V); the per-seed geometric mean over logs of that ratio must
exceed 1 on every seed (comparing the variances of two different runs would mix in that they
reach different policies; that cross-run ratio is reported too); and (ii) faster learning (the
area under the evaluation curve, mean over logs, higher by more than 2 standard errors of the
difference).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Sequence

from absl import app, flags
import numpy as np

import agents
from agents import runner
from experiments import _common, configs

ENVS = ("CartPole-v1", "Acrobot-v1")
# (label, agent, config overrides)
VARIANTS = (
    ("reinforce[none]", "reinforce", {"baseline": "none"}),
    ("reinforce[moving_average]", "reinforce", {"baseline": "moving_average"}),
    ("reinforce[learned V]", "reinforce", {"baseline": "learned"}),
    ("actor_critic", "actor_critic", {}),
)
NONE, LEARNED = "reinforce[none]", "reinforce[learned V]"


@dataclasses.dataclass(frozen=True)
class Sizes:
    num_seeds: int = _common.size_field(8, "Seeds per (environment, variant).")
    total_steps: int = _common.size_field(500_000, "Environment steps per seed.")


# Compilation dominates (≈ 14 s per variant; 5·10⁵ steps × 4 seeds train in ≈ 7 s), so the quick
# budget keeps the full step count, halves the seeds and trains only the two variants the verdict
# compares (the full budget trains all four).
QUICK = Sizes(num_seeds=4, total_steps=500_000)
QUICK_VARIANTS = (NONE, LEARNED)
FULL = Sizes()


def train_variant(agent: str, overrides: dict, env_id: str, sizes: Sizes, seed: int) -> dict:
    """Trains ``sizes.num_seeds`` seeds (vmapped) and returns per-seed curves [seeds, logs]."""
    entry, config = configs.make_config(agent, env_id, overrides, sizes.total_steps, quiet=True)
    env, env_params = configs.make_env(entry, agent, env_id)
    out, compile_s, train_s = runner.train_seeds(
        configs.make_stages(entry, config, env, env_params), sizes.num_seeds, seed,
        compiler_options=agents.compiler_options())
    m = {k: np.asarray(v) for k, v in out.metrics.items()}
    return {"env_steps": m["env_steps"][0].tolist(), "eval_return": m["eval_return"].tolist(),
            "grad_variance": m["grad_variance"].tolist(),
            "grad_variance_no_baseline": m["grad_variance_no_baseline"].tolist(),
            "compile_seconds": compile_s,
            "train_seconds": train_s}


def _log_ratio_per_seed(numerator, denominator) -> np.ndarray:
    """Per seed, the mean over logs of log(numerator / denominator), over the logs where both
    are positive and finite (a policy that has become deterministic has zero gradient)."""
    num, den = np.asarray(numerator, float), np.asarray(denominator, float)
    ok = (num > 0) & (den > 0) & np.isfinite(num) & np.isfinite(den)
    logs = np.where(ok, np.log(np.where(ok, num, 1.0)) - np.log(np.where(ok, den, 1.0)), 0.0)
    return logs.sum(1) / np.maximum(ok.sum(1), 1)


def compare(none: dict, learned: dict) -> dict:
    """The numbers that decide the claim on one environment."""
    log_ratio = _log_ratio_per_seed(learned["grad_variance_no_baseline"],
                                    learned["grad_variance"])                  # paired
    cross = _log_ratio_per_seed(none["grad_variance"], learned["grad_variance"])
    auc_none = np.mean(np.asarray(none["eval_return"]), axis=1)
    auc_learned = np.mean(np.asarray(learned["eval_return"]), axis=1)
    diff = float(auc_learned.mean() - auc_none.mean())
    se = float(np.sqrt(auc_learned.var(ddof=1) / auc_learned.size + auc_none.var(ddof=1) / auc_none.size)) \
        if auc_none.size > 1 else float("nan")
    return {"variance_ratio_per_seed": np.exp(log_ratio).tolist(),
            "variance_ratio": float(np.exp(log_ratio.mean())),
            "cross_run_variance_ratio": float(np.exp(cross.mean())),
            "auc_none": float(auc_none.mean()), "auc_learned": float(auc_learned.mean()),
            "auc_difference": diff, "auc_difference_se": se,
            "final_none": float(np.asarray(none["eval_return"])[:, -1].mean()),
            "final_learned": float(np.asarray(learned["eval_return"])[:, -1].mean())}


NUM_SE = 2.0  # the learned baseline's gain in mean return must exceed this many standard errors

RULE = ("Holds when, on every environment, the learned V(s) baseline lowers the variance of the "
        "per-sample actor gradients on every seed (the geometric mean over logs of Var(no "
        "baseline)/Var(learned V), measured on the same batches, above 1) and raises the mean "
        "greedy evaluation return over training (the area under the learning curve) above "
        f"REINFORCE without baseline by more than {NUM_SE:g} standard errors of the difference.")


def verdict(results: dict) -> tuple[bool, str]:
    """Holds, by ``RULE``, when on every environment the learned baseline lowers the variance on
    every seed and raises the area under the learning curve by more than 2 standard errors."""
    parts, holds = [], True
    for env_id, c in results["comparison"].items():
        per_seed = c["variance_ratio_per_seed"]
        lower = min(per_seed) > 1.0
        faster = c["auc_difference"] > NUM_SE * c["auc_difference_se"]
        holds = holds and lower and faster
        parts.append(f"{env_id}: Var(no baseline)/Var(learned V) on the same batches "
                     f"{c['variance_ratio']:.1f}× (per seed {min(per_seed):.1f}–{max(per_seed):.1f}, "
                     f"{'all' if lower else 'not all'} > 1; across runs "
                     f"{c['cross_run_variance_ratio']:.1f}×, not judged); mean eval return over "
                     f"training {c['auc_learned']:.1f} vs {c['auc_none']:.1f}: difference "
                     f"{c['auc_difference']:+.1f} ± {c['auc_difference_se']:.1f} "
                     f"({'>' if faster else '≤'} {NUM_SE:g} s.e.); final "
                     f"{c['final_learned']:.1f} vs {c['final_none']:.1f}")
    return holds, f"seed 004 {'HOLDS' if holds else 'DOES NOT HOLD'}: " + "; ".join(parts)


def _mean_se(x: np.ndarray) -> str:
    """Mean ± standard error over seeds."""
    se = np.std(x, ddof=1) / np.sqrt(x.size) if x.size > 1 else float("nan")
    return f"{np.mean(x):.4g} ± {se:.2g}"


def markdown(results: dict) -> str:
    rows = []
    for env_id, runs in results["runs"].items():
        for label, r in runs.items():
            ev = np.asarray(r["eval_return"])
            rows.append({"env": env_id, "variant": label,
                         "final eval return ± s.e.": _mean_se(ev[:, -1]),
                         "mean eval return over training ± s.e.": _mean_se(ev.mean(axis=1)),
                         "median grad variance": float(np.median(r["grad_variance"])),
                         "train seconds (wall-clock)": r["train_seconds"]})
    return (f"Final and mean greedy evaluation return (mean over {results['sizes']['num_seeds']} "
            "seeds ± the standard error over seeds), the median per-sample actor-gradient "
            "variance over seeds and logs, and the training time (wall-clock, shown, never "
            "judged):\n\n" + _common.markdown_table(rows, list(rows[0])))


def _plot(results: dict, key: str, ylabel: str, log: bool, path) -> None:
    plt = _common.plt
    envs = list(results["runs"])
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 3.8), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        for label, r in results["runs"][env_id].items():
            y = np.asarray(r[key])
            if log:
                y = np.log10(np.where(y > 0, y, np.nan))
            mean = np.nanmean(y, 0)
            se = np.nanstd(y, 0, ddof=1) / np.sqrt(y.shape[0]) if y.shape[0] > 1 else 0 * mean
            line, = ax.plot(r["env_steps"], mean, label=label)
            ax.fill_between(r["env_steps"], mean - se, mean + se, color=line.get_color(), alpha=0.2)
        ax.set_title(env_id)
        ax.set_xlabel("env steps per seed")
        ax.set_ylabel(f"log10 {ylabel}" if log else ylabel)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"mean ± s.e. over {results['sizes']['num_seeds']} seeds")
    _common.save_figure(fig, path)


FIGURES = ("learning_curves.png", "gradient_variance.png")


def run(output_dir, *, quick: bool = False, seed: int = 0, envs: Sequence[str] = ENVS,
        variants: Sequence[str] | None = None, overwrite: bool = True, **sizes) -> dict:
    """Trains each variant on every environment; ``variants`` must include the two compared
    (default: all four, or the two compared with ``quick``)."""
    known = {v[0]: v for v in VARIANTS}
    if variants is None:
        variants = QUICK_VARIANTS if quick else tuple(known)
    if not {NONE, LEARNED} <= set(variants) or not set(variants) <= set(known):
        raise ValueError(f"variants must be among {list(known)} and include {NONE!r} and {LEARNED!r}")
    size = _common.resolve_sizes(QUICK, FULL, quick, sizes)
    if size.num_seeds < 2:
        raise ValueError(f"num_seeds must be ≥ 2 for standard errors, got {size.num_seeds}")
    out = _common.prepare_output_dir(output_dir, overwrite)
    progress = _common.Progress("reinforce_baselines")
    results = {"sizes": dataclasses.asdict(size), "seed": seed, "runs": {}, "comparison": {}}
    for env_id in envs:
        runs = {}
        for label, agent, overrides in (known[v] for v in variants):
            runs[label] = train_variant(agent, overrides, env_id, size, seed)
            final = np.asarray(runs[label]["eval_return"])[:, -1].mean()
            progress(f"{env_id} {label}: final eval return {final:.1f} "
                     f"(compile {runs[label]['compile_seconds']:.0f}s, "
                     f"train {runs[label]['train_seconds']:.0f}s)")
        results["runs"][env_id] = runs
        results["comparison"][env_id] = compare(runs[NONE], runs[LEARNED])
    holds, line = verdict(results)
    results["verdict"] = {"holds": holds, "line": line}
    print(f"seed 004 claim {'holds' if holds else 'does not hold'}: {line}")
    _common.write_json(out / "reinforce_baselines.json", results)
    _plot(results, "eval_return", "greedy evaluation return", False, out / "learning_curves.png")
    _plot(results, "grad_variance", "actor-gradient variance", True, out / "gradient_variance.png")
    progress(f"wrote {out}")
    return results


def main(argv):
    del argv
    fv = flags.FLAGS
    out = _common.output_dir_or_exit(fv.output_dir, fv.overwrite)
    try:
        run(out, quick=fv.quick, seed=fv.seed, envs=fv.envs, **_common.sizes_from_flags(Sizes, fv))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    _common.define_common_flags("results/reinforce_baselines")
    _common.define_size_flags(QUICK, FULL)
    flags.DEFINE_list("envs", list(ENVS), "gymnax environments (discrete actions).")
    # The flags are defined in _common; list them in this module's --help.
    flags.adopt_module_key_flags(_common)
    app.run(main)
