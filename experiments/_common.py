"""Helpers shared by the experiment modules (DESIGN.md §5): the output folder, atomic JSON,
figures, progress lines, and the machine-independent measures verdicts are decided on (XLA's
count of a program's work; standard errors of Monte Carlo variances), beside the
benchmarks' alternating rounds.

Every module is run as ``python -m experiments.<name> --output_dir=... [--overwrite]`` and also
exposes ``run(output_dir, *, quick, seed, **sizes)`` for the report. Flags are defined only when a
module runs as the main program (``define_common_flags`` from its ``__main__`` block), so the
report can import several modules without their flag names colliding.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import flags
import jax
import matplotlib

# Experiments run headless (CI, remote machines); select the backend before pyplot is imported.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

EXIT_OUTPUT_EXISTS = 2


class OutputDirNotEmpty(FileExistsError):
    """The output folder already holds files and ``--overwrite`` was not given."""


def define_common_flags(default_output_dir: str) -> None:
    """Defines ``--seed``, ``--output_dir``, ``--overwrite`` and ``--quick``."""
    flags.DEFINE_integer("seed", 0, "PRNG seed; every random draw of the run derives from it.")
    flags.DEFINE_string("output_dir", default_output_dir,
                        "Folder for the JSON results and PNG figures (created if missing).")
    flags.DEFINE_bool("overwrite", False,
                      "Allow writing into an output folder that already holds files.")
    flags.DEFINE_bool("quick", False,
                      "Use the quick budget (the report's, about a minute) instead of the paper's.")


def prepare_output_dir(path: str | os.PathLike, overwrite: bool) -> pathlib.Path:
    """Creates ``path``; raises ``OutputDirNotEmpty`` if it holds files and not ``overwrite``."""
    out = pathlib.Path(path)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputDirNotEmpty(f"output folder {str(out)!r} is not empty; pass --overwrite "
                                "or choose another --output_dir")
    out.mkdir(parents=True, exist_ok=True)
    return out


def output_dir_or_exit(path: str | os.PathLike, overwrite: bool) -> pathlib.Path:
    """``prepare_output_dir`` for a command line: a one-line error and exit status 2."""
    try:
        return prepare_output_dir(path, overwrite)
    except OutputDirNotEmpty as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_OUTPUT_EXISTS)


def size_field(default: int, help: str) -> Any:
    """A field of a frozen ``Sizes`` dataclass; its help text becomes the flag's."""
    return dataclasses.field(default=default, metadata={"help": help})


def define_size_flags(quick_sizes: Any, full_sizes: Any) -> None:
    """One integer flag per field of a ``Sizes`` dataclass; unset means the preset's value."""
    for f in dataclasses.fields(full_sizes):
        flags.DEFINE_integer(f.name, None, f"{f.metadata['help']} Default: "
                             f"{getattr(full_sizes, f.name)} ({getattr(quick_sizes, f.name)} "
                             "with --quick).")


def sizes_from_flags(sizes_type: type, flag_values: flags.FlagValues) -> dict:
    """The fields of the ``sizes_type`` dataclass that were given as flags."""
    return {f.name: flag_values[f.name].value for f in dataclasses.fields(sizes_type)
            if flag_values[f.name].value is not None}


def resolve_sizes(quick_sizes: Any, full_sizes: Any, quick: bool, overrides: dict) -> Any:
    """The quick or full preset (a frozen dataclass) with ``overrides`` applied.

    Raises ``TypeError`` on a name that is not a field, so a typo never silently runs the preset.
    """
    base = quick_sizes if quick else full_sizes
    names = {f.name for f in dataclasses.fields(base)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown sizes {sorted(unknown)}; known: {sorted(names)}")
    return dataclasses.replace(base, **overrides)


def _to_builtin(obj: Any) -> Any:
    """JSON encoder fallback: numpy / JAX scalars and arrays become numbers and lists."""
    if isinstance(obj, (np.generic, np.ndarray)) or hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _atomic_write(path: pathlib.Path, write) -> pathlib.Path:
    """Calls ``write(tmp_path)`` for a temporary file beside ``path``, then renames it onto
    ``path`` (``os.replace`` is atomic on POSIX): a reader, or a crash or interruption mid-write,
    sees the old file or the new one, never half of one. On an exception nothing is left."""
    # Created by os.open with mode 0o666, so the file gets the umask's permissions (mkstemp's
    # are 0600 whatever the umask: a colleague could read report.md but not its figures).
    tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> pathlib.Path:
    """Writes ``obj`` as JSON atomically: a reader (or a crash) never sees a half-written file."""
    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=indent, default=_to_builtin, allow_nan=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())

    return _atomic_write(pathlib.Path(path), write)


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> pathlib.Path:
    """Saves ``fig`` (format from the suffix, PNG by default) atomically and closes it (figures
    are many and the runs long)."""
    path = pathlib.Path(path)
    fig.tight_layout()
    try:
        _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120,
                                                    format=path.suffix[1:] or "png"))
    finally:
        plt.close(fig)
    return path


class Progress:
    """Prints ``[name  12.3s] message`` lines, flushed, so long runs show where they are."""

    def __init__(self, name: str):
        self.name = name
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        print(f"[{self.name} {self.elapsed():7.1f}s] {message}", flush=True)


def markdown_table(rows: list[dict], columns: list[str], digits: int = 4) -> str:
    """A markdown table of ``rows`` (dicts) restricted to ``columns``; floats to ``digits``
    significant digits."""
    def fmt(v):
        return f"{v:.{digits}g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Counted work: what a verdict on cost compares, because it does not move with the machine's load.


def counted_cost(fn: Callable, *args: Any) -> dict:
    """XLA's count of the work of ``jax.jit(fn)(*args)``: ``{"flops", "bytes_accessed",
    "transcendentals"}`` from the cost analysis of the lowered program.

    The count is of the program as written (before the backend's fusion, so bytes count every
    intermediate array), and is the same on a quiet and on a loaded machine, and on any machine.
    The program is lowered as for GPUs and TPUs (``lowering_platforms=("cuda",)``; lowering
    needs no such device): the CPU lowering rolls each threefry draw's rounds into a loop, and
    XLA counts the body of a loop once, whatever its trip count (a ``lax.scan`` of 10 steps
    counts as one step, checked with jax 0.10.2). A program with a loop of its own is refused:
    count one step and multiply.
    """
    lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    if "stablehlo.while" in lowered.as_text():
        raise ValueError("the program has a loop, whose body XLA's cost analysis counts once; "
                         "count the cost of one iteration instead")
    cost = lowered.cost_analysis()
    # Older jax returned one dict per device program.
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"flops": float(cost["flops"]), "bytes_accessed": float(cost["bytes accessed"]),
            "transcendentals": float(cost.get("transcendentals", 0.0))}


def variance_with_stderr(samples: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate sample variance of ``samples`` [S, ...] (S − 1 in the denominator) and its
    standard error.

    The variance is S/(S − 1) times the mean of d_s = (x_s − x̄)², so its standard error is, to
    first order in 1/S, that of a mean: S/(S − 1) · std(d)/√S. It needs the fourth moment and is
    large for heavy-tailed samples, as it should be.
    """
    x = np.asarray(samples, np.float64)
    return _scaled_mean_with_stderr((x - x.mean(axis=0)) ** 2)


def total_variance_with_stderr(samples: Any) -> tuple[float, float]:
    """tr Var of samples [S, ...] (the sum of the coordinates' variances) and its standard error:
    as ``variance_with_stderr`` with d_s = ‖x_s − x̄‖²."""
    x = np.asarray(samples, np.float64)
    x = x.reshape(x.shape[0], -1)
    total, se = _scaled_mean_with_stderr(np.sum((x - x.mean(axis=0)) ** 2, axis=1))
    return float(total), float(se)


def _scaled_mean_with_stderr(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = d.shape[0]
    if n < 2:
        raise ValueError(f"a variance needs at least 2 samples, got {n}")
    scale = n / (n - 1)
    return scale * d.mean(axis=0), scale * d.std(axis=0, ddof=1) / np.sqrt(n)


# --------------------------------------------------------------------------------------------
# Benchmarks: both sides of a ratio measured in the same rounds.


def in_turn(sides: Mapping[str, Callable[[], Any]], round_index: int) -> dict:
    """Calls each side once: in the given order on even rounds, reversed on odd ones, so a drift
    in the machine's load (or a cache one side warms for the next) favours neither side over
    the rounds. Returns name -> result."""
    names = list(sides)
    order = names if round_index % 2 == 0 else names[::-1]
    return {name: sides[name]() for name in order}


def ratio_summary(ratios: Sequence[float]) -> dict:
    """The median and the range (min–max) of per-round ratios, and the ratios themselves."""
    ratios = [float(r) for r in ratios]
    if not ratios:
        raise ValueError("no rounds to summarize")
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "per_round": ratios}
