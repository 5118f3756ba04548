r"""The experiment report: every claim of the seeds, run, measured and judged in one document.

    python -m experiments.report --output_dir=results/report            # quick budget (minutes)
    python -m experiments.report --output_dir=results/report --full     # paper scale

Runs each experiment module into ``OUTPUT_DIR/<module>/`` and writes ``OUTPUT_DIR/report.md``
with a header (date, machine, jax version, run time), then for each seed claim its verdict (holds /
does not hold here), the rule that decided it in one sentence, the numbers it compared, its
figures and its tables; plus ``report.json``. A module that fails is reported as such and makes
the exit status 1; the others still run.

Verdicts are decided on quantities that do not depend on the machine: statistics of the results
(differences with their standard errors, exact values) and work counted by XLA in a compiled
program, never on seconds; the same seed gives the same verdicts on a quiet and on a busy
machine. Wall-clock times are shown beside, in the tables.

Each experiment module provides ``run(output_dir, *, quick, seed) -> results``,
``verdict(results) -> (holds, line)`` (the line gives the numbers compared), ``RULE`` (the rule
in one sentence), and optionally ``markdown(results) -> str`` (its tables) and ``FIGURES`` (its
PNG file names, in order; otherwise every PNG it wrote is shown). A claim is one entry of
``CLAIMS``.
"""

from __future__ import annotations

import datetime
import importlib
import os
import pathlib
import platform
import sys
import time
import traceback
from typing import NamedTuple, Sequence

import jax
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
          "REBAR ≤ REINFORCE: plain on the RELAX toy problem, with a leave-one-out baseline in a "
          "discrete VAE) hold here.",
          "discrete_estimators"),
)


NO_RULE = "not stated by the module (see its verdict function)"


def run_claim(claim: Claim, out: pathlib.Path, quick: bool, seed: int, progress) -> dict:
    """Runs one claim's module; returns its verdict, rule, tables and figures, or the failure."""
    sub = out / claim.module
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"experiments.{claim.module}")
        results = module.run(sub, quick=quick, seed=seed)
        holds, line = module.verdict(results)
        tables = module.markdown(results) if hasattr(module, "markdown") else ""
        figures = list(getattr(module, "FIGURES", ())) or sorted(p.name for p in sub.glob("*.png"))
        entry = {"status": "ok", "holds": bool(holds), "verdict": line,
                 "rule": getattr(module, "RULE", NO_RULE), "tables": tables,
                 "figures": [f"{claim.module}/{name}" for name in figures]}
    except Exception as e:  # a failing module is reported, not fatal to the others
        traceback.print_exc()
        entry = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    entry["seconds"] = time.perf_counter() - start
    progress(f"seed {claim.seed} ({claim.module}): {entry['status']} in {entry['seconds']:.0f}s"
             + (f", claim {'holds' if entry['holds'] else 'does not hold'}" if entry["status"] == "ok" else ""))
    return entry


def _cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where the report ran: CPU model and cores, JAX's devices, jax and Python versions."""
    return {"cpu": _cpu_name(), "cpu_cores": os.cpu_count(),
            "devices": sorted({f"{d.platform}: {d.device_kind}" for d in jax.devices()}),
            "num_devices": jax.device_count(), "jax": jax.__version__,
            "python": platform.python_version(), "os": platform.platform()}


def _verdict_word(e: dict) -> str:
    return "holds" if e["holds"] else "does not hold"


def render(entries: dict, quick: bool, seed: int, total_seconds: float, host: dict,
           date: str) -> str:
    """report.md: a header, a summary table of verdicts, then one section per claim."""
    budget = (f"- Budget: {'quick' if quick else 'full (paper scale)'}; seed {seed}; run time "
              f"{total_seconds:.0f} s (wall-clock, which depends on the machine and its load). "
              f"Regenerate with `python -m experiments.report{'' if quick else ' --full'}`.")
    how = ("Every verdict follows a rule stated with it, applied to statistics of the results "
           "(differences with their standard errors, exact values) or to work XLA counts in a "
           "program, never to seconds: the same seed gives the same verdicts on a "
           "quiet and on a busy machine. Monte Carlo numbers are given as mean ± standard error.")
    devices = f"{', '.join(host['devices'])} ({host['num_devices']} in all)"
    lines = ["# gradest: the seeds' claims, reproduced", "",
             f"- Date: {date}",
             f"- Machine: {host['cpu']}, {host['cpu_cores']} cores; JAX devices: {devices}",
             f"- Software: jax {host['jax']}, Python {host['python']}, {host['os']}",
             budget, "", how, "", "| seed | claim | verdict |", "|---|---|---|"]
    for c in CLAIMS:
        e = entries[c.seed]
        verdict = f"**{_verdict_word(e)}**" if e["status"] == "ok" else f"**not run**: {e['error']}"
        lines.append(f"| {c.seed} | {c.claim} | {verdict} |")
    for c in CLAIMS:
        e = entries[c.seed]
        module = f"Module: `python -m experiments.{c.module}` ({e['seconds']:.0f} s here)."
        lines += ["", f"## Seed {c.seed}: {c.claim}", "", module, ""]
        if e["status"] != "ok":
            lines.append(f"Did not run: `{e['error']}`")
            continue
        lines += [f"**Verdict: {_verdict_word(e)} here.**", "", f"**Rule.** {e['rule']}", "",
                  f"**Numbers compared.** {e['verdict']}", ""]
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
    host = machine()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    (out / "report.md").write_text(render(entries, quick, seed, total, host, date))
    _common.write_json(out / "report.json", {"quick": quick, "seed": seed, "seconds": total,
                                             "date": date, "machine": host, "claims": entries})
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
