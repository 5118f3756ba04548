"""``jax.jit`` with the launcher's opt-in XLA CPU setting, for the agents' training programs.

By default ``jit`` is plain ``jax.jit``: the same program and the same meaning on every backend,
and every test passes under it. One setting is opt-in, for a launcher on CPU: the environment
variable ``AGENTS_CPU_VECTOR_WIDTH`` (e.g. ``AGENTS_CPU_VECTOR_WIDTH=512 python -m
experiments.train ...``) becomes XLA's ``xla_cpu_prefer_vector_width`` (XLA's default is 256).
On an AVX2 machine LLVM then emits each elementwise loop two registers wide, so the two
independent chains of a polynomial (the exp of a swish, the rational tanh) overlap. It is not
fast math (exp, tanh, log, sums and matmuls give the same float32 bits), but fused reductions may
add in another order, so a training run follows another trajectory of the same distribution.
Measured on the project's 2-core CPU machines (interleaved runs, ``experiments/benchmark_agents``):
SAC on Pendulum-v1 about 10–15% faster per step, PPO on CartPole-v1 about 3–15%. Other backends
never get it.

Pass ``compiler_options`` to add or override options for one program.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax

# The launcher's opt-in: a width in bits for ``xla_cpu_prefer_vector_width`` on CPU.
CPU_VECTOR_WIDTH_ENV = "AGENTS_CPU_VECTOR_WIDTH"


def compiler_options(backend: str | None = None, **overrides: Any) -> dict[str, Any] | None:
    """The options ``jit`` compiles with on ``backend`` (default: JAX's default backend): the
    opt-in CPU vector width where ``AGENTS_CPU_VECTOR_WIDTH`` is set and the backend is CPU,
    updated by ``overrides``; ``None`` where there are none."""
    backend = backend or jax.default_backend()
    width = os.environ.get(CPU_VECTOR_WIDTH_ENV, "").strip()
    options = {}
    if width and backend == "cpu":
        try:
            options["xla_cpu_prefer_vector_width"] = int(width)
        except ValueError:
            raise ValueError(f"{CPU_VECTOR_WIDTH_ENV} must be an integer number of bits, "
                             f"got {width!r}") from None
    options.update(overrides)
    return options or None


_options_for_backend = compiler_options  # ``jit``'s keyword argument shadows the name


def jit(fn: Callable, *, compiler_options: dict[str, Any] | None = None, **jit_kwargs: Any):
    """``jax.jit(fn, **jit_kwargs)`` with ``compiler_options()`` (updated by the given ones)."""
    return jax.jit(fn, compiler_options=_options_for_backend(**(compiler_options or {})),
                   **jit_kwargs)
