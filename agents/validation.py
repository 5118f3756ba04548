"""Checks of config fields, for each config's ``validate()``: a field no run can use is a
``ValueError`` with one line, before anything is traced or compiled.

A check is ``check(name, value)`` that raises ``ValueError`` or returns. ``check_fields`` runs
one check per field of a config dataclass and insists that every field has one, so that a field
added to a config without a check fails its tests rather than reaching the compiler unchecked.
Traced (float) fields may hold arrays, e.g. configs stacked for ``vmap``: every element is
checked.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable

import numpy as np

Check = Callable[[str, Any], None]


def _floats(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _shown(value: Any) -> str:
    """The value for people: 6 significant digits (a float32 0.8 is not 0.800000011920929)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return f"{float(array):.6g}"
    return "[" + ", ".join(f"{x:.6g}" for x in array.ravel()) + "]"


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def finite(name: str, value: Any) -> None:
    if not np.all(np.isfinite(_floats(name, value))):
        raise ValueError(f"{name} must be a finite number, got {_shown(value)}")


def non_negative(name: str, value: Any) -> None:
    v = _floats(name, value)
    if not (np.all(np.isfinite(v)) and np.all(v >= 0)):
        raise ValueError(f"{name} must be a finite number ≥ 0, got {_shown(value)}")


def positive(name: str, value: Any) -> None:
    v = _floats(name, value)
    if not (np.all(np.isfinite(v)) and np.all(v > 0)):
        raise ValueError(f"{name} must be a finite number > 0, got {_shown(value)}")


def positive_or_inf(name: str, value: Any) -> None:
    """> 0, where ``inf`` is a setting ("off"), not a mistake."""
    v = _floats(name, value)
    if not np.all(v > 0):   # NaN fails too
        raise ValueError(f"{name} must be > 0 (inf: off), got {_shown(value)}")


def unit_interval(name: str, value: Any) -> None:
    v = _floats(name, value)
    if not np.all((v >= 0) & (v <= 1)):
        raise ValueError(f"{name} must lie in [0, 1], got {_shown(value)}")


def open_unit_interval(name: str, value: Any) -> None:
    v = _floats(name, value)
    if not np.all((v > 0) & (v < 1)):
        raise ValueError(f"{name} must lie in (0, 1), got {_shown(value)}")


def widths(name: str, value: Any) -> None:
    """Hidden layer widths: a sequence of positive integers (empty: no hidden layer)."""
    if isinstance(value, (str, bytes)) or not all(
            isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1
            for w in (value if hasattr(value, "__iter__") else [value])):
        shown = list(value) if hasattr(value, "__iter__") and not isinstance(value, str) else value
        raise ValueError(f"{name} must be positive layer widths, got {shown!r}")


def one_of(choices) -> Check:
    """The value must be one of ``choices``; the error lists them."""
    choices = tuple(choices)

    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}; choose one of {list(choices)}")
    return check


def check_fields(config: Any, checks: dict[str, Check]) -> None:
    """Runs ``checks[f](f, config.f)`` for every field ``f`` of the dataclass ``config``, in
    field order. ``TypeError`` (a bug of the config class, not of its values) if a field has no
    check or a check names no field."""
    names = [f.name for f in dataclasses.fields(config)]
    missing, unknown = set(names) - set(checks), set(checks) - set(names)
    if missing or unknown:
        raise TypeError(f"{type(config).__name__}.validate: fields without a check "
                        f"{sorted(missing)}, checks of no field {sorted(unknown)}")
    for name in names:
        checks[name](name, getattr(config, name))
