r"""The experiment report: every claim of the seeds, run, measured and judged in one document.

    python -m experiments.report --output_dir=results/report            # quick budget (minutes)
    python -m experiments.report --output_dir=results/report --full     # paper scale

Runs each experiment module into ``OUTPUT_DIR/<module>/`` and writes ``OUTPUT_DIR/report.md``
with, for each seed claim, its figures, its tables and a one-line verdict (holds / does not hold
here) with the numbers that decide it, plus ``report.json``. A module that fails is reported as
such and makes the exit status 1; the others still run.

Each experiment module provides ``run(output_dir, *, quick, seed) -> results``,
``verdict(results) -> (holds, line)``, and optionally ``markdown(results) -> str`` (its tables)
and ``FIGURES`` (its PNG file names, in order; otherwise every PNG it wrote is shown).
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import time
import traceback
from typing import NamedTuple, Sequence

from absl import app, flags

from experiments import _common


class Claim(NamedTuple):
    seed: str
    claim: str
    module: str


CLAIMS = (
    Claim("000", "Reparameterization usually gives lower-variance gradients than the score "
          "function, but a counter-example can be built.", "variance"),
    Claim("001", "Gumbel-Max samples the categorical exactly; Gumbel-Softmax trades bias for "
          "variance through the temperature τ.", "gumbel"),
    Claim("002", "Score-function SAC performs and costs about the same as reparameterized SAC, "
          "but dropping its baseline makes it much worse.", "sac_estimators"),
    Claim("003", "The zeroth-order gradient of an argmax objective points where the policy "
          "gradient points.", "zeroth_order"),
    Claim("004", "A value baseline cuts the variance of REINFORCE's gradient and speeds up "
          "learning.", "reinforce_baselines"),
    Claim("i14", "The variance orderings of the DisARM and RELAX papers (DisARM ≤ ARM; RELAX ≤ "
          "REBAR ≤ REINFORCE with a baseline) hold on the RELAX toy problem and a discrete VAE.",
          "discrete_estimators"),
)


def run_claim(claim: Claim, out: pathlib.Path, quick: bool, seed: int, progress) -> dict:
    """Runs one claim's module; returns its verdict, tables and figures, or the failure."""
    sub = out / claim.module
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"experiments.{claim.module}")
        results = module.run(sub, quick=quick, seed=seed)
        holds, line = module.verdict(results)
        tables = module.markdown(results) if hasattr(module, "markdown") else ""
        figures = list(getattr(module, "FIGURES", ())) or sorted(p.name for p in sub.glob("*.png"))
        entry = {"status": "ok", "holds": bool(holds), "verdict": line, "tables": tables,
                 "figures": [f"{claim.module}/{name}" for name in figures]}
    except Exception as e:  # a failing module is reported, not fatal to the others
        traceback.print_exc()
        entry = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    entry["seconds"] = time.perf_counter() - start
    progress(f"seed {claim.seed} ({claim.module}): {entry['status']} in {entry['seconds']:.0f}s"
             + (f", claim {'holds' if entry['holds'] else 'does not hold'}" if entry["status"] == "ok" else ""))
    return entry


def render(entries: dict, quick: bool, seed: int, total_seconds: float) -> str:
    """report.md: a summary table of verdicts, then one section per claim."""
    lines = ["# gradest: the seeds' claims, reproduced", "",
             f"Budget: {'quick' if quick else 'full (paper scale)'}; seed {seed}; "
             f"{total_seconds:.0f} s in all. Regenerate with `python -m experiments.report"
             f"{'' if quick else ' --full'}`.", "",
             "| seed | claim | verdict | numbers |", "|---|---|---|---|"]
    for c in CLAIMS:
        e = entries[c.seed]
        if e["status"] == "ok":
            lines.append(f"| {c.seed} | {c.claim} | **{'holds' if e['holds'] else 'does not hold'}** "
                         f"| {e['verdict']} |")
        else:
            lines.append(f"| {c.seed} | {c.claim} | **not run** | {e['error']} |")
    for c in CLAIMS:
        e = entries[c.seed]
        lines += ["", f"## Seed {c.seed}: {c.claim}", "", f"Module: `python -m experiments.{c.module}`"
                  f" ({e['seconds']:.0f} s here).", ""]
        if e["status"] != "ok":
            lines.append(f"Did not run: `{e['error']}`")
            continue
        lines += [f"**Verdict: {'holds' if e['holds'] else 'does not hold'} here.** {e['verdict']}", ""]
        lines += [f"![{name}]({name})" for name in e["figures"]]
        if e["tables"]:
            lines += ["", e["tables"]]
    return "\n".join(lines) + "\n"


def run(output_dir, *, quick: bool = True, seed: int = 0, only: Sequence[str] = (),
        overwrite: bool = False) -> dict:
    """Runs the claims (``only``: a subset of seed numbers or module names) and writes the report."""
    selected = [c for c in CLAIMS if not only or c.seed in only or c.module in only]
    if not selected:
        raise ValueError(f"--only matched no claim; known: {[c.seed for c in CLAIMS]} or "
                         f"{[c.module for c in CLAIMS]}")
    out = _common.prepare_output_dir(output_dir, overwrite)
    progress = _common.Progress("report")
    entries = {}
    for i, claim in enumerate(selected):
        progress(f"[{i + 1}/{len(selected)}] seed {claim.seed}: experiments.{claim.module} …")
        entries[claim.seed] = run_claim(claim, out, quick, seed, progress)
    for c in CLAIMS:
        entries.setdefault(c.seed, {"status": "skipped", "error": "not selected (--only)",
                                    "seconds": 0.0})
    total = progress.elapsed()
    (out / "report.md").write_text(render(entries, quick, seed, total))
    _common.write_json(out / "report.json", {"quick": quick, "seed": seed, "seconds": total,
                                             "claims": entries})
    progress(f"wrote {out / 'report.md'}")
    return entries


def main(argv):
    del argv
    fv = flags.FLAGS
    out = _common.output_dir_or_exit(fv.output_dir, fv.overwrite)
    try:
        entries = run(out, quick=not fv.full, seed=fv.seed, only=fv.only, overwrite=True)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    failed = [s for s, e in entries.items() if e["status"] == "failed"]
    if failed:
        print(f"error: claims {failed} failed to run; see report.md", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    flags.DEFINE_string("output_dir", "results/report", "Folder for report.md, report.json and "
                        "each module's results (created if missing).")
    flags.DEFINE_bool("overwrite", False, "Allow writing into an output folder that already "
                      "holds files (otherwise refuse, so runs are never mixed).")
    flags.DEFINE_bool("full", False, "Paper-scale budgets instead of the quick ones (the quick "
                      "report takes minutes on 2 CPU cores; the full one, hours).")
    flags.DEFINE_integer("seed", 0, "PRNG seed passed to every module.")
    flags.DEFINE_list("only", [], "Run only these claims (seed numbers like 000 or module names).")
    app.run(main)
