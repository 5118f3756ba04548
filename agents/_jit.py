"""``jax.jit`` with the XLA compiler options the agents' training programs are built with.

On the CPU backend, XLA's LLVM code generator is asked to prefer 512-bit vectors
(``xla_cpu_prefer_vector_width=512``; XLA's default is 256). On an AVX2 machine LLVM then emits
each elementwise loop two registers wide, and the two independent chains of a polynomial (the
exp of a swish or sigmoid, the rational tanh) overlap instead of waiting on each other. It is
not fast math: exp, tanh, log, sums and matmuls give bitwise the same float32 results; in a whole
training program some fused reductions add in another order, so one SAC update agrees with the
default build to float rounding (relative differences ≤ 2·10⁻⁷), and a training run, being
chaotic, follows another trajectory of the same distribution. Training programs of a few hundred
samples per kernel spend much of their time in such loops, and on this project's 2-core CPU
machines the option measured (interleaved runs, ``experiments/benchmark_agents.py``): SAC on
Pendulum-v1 about 10–15% faster per step, PPO on CartPole-v1 about 3–15% (median 6%); compile
time unchanged. Other backends get no options.

``experiments`` compile every training program through ``jit`` below, so ``experiments.train``,
the report and the benchmarks run what they measure. Pass ``compiler_options`` to add or
override options (``{"xla_cpu_prefer_vector_width": 256}`` restores XLA's default).
"""

from __future__ import annotations

from typing import Any, Callable

import jax

# Options for XLA's CPU backend, applied by ``compiler_options`` / ``jit`` on CPU only.
CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_prefer_vector_width": 512}


def compiler_options(backend: str | None = None, **overrides: Any) -> dict[str, Any] | None:
    """The options ``jit`` compiles with on ``backend`` (default: JAX's default backend),
    updated by ``overrides``; ``None`` where there are none."""
    backend = backend or jax.default_backend()
    options = dict(CPU_COMPILER_OPTIONS) if backend == "cpu" else {}
    options.update(overrides)
    return options or None


_options_for_backend = compiler_options  # ``jit``'s keyword argument shadows the name


def jit(fn: Callable, *, compiler_options: dict[str, Any] | None = None, **jit_kwargs: Any):
    """``jax.jit(fn, **jit_kwargs)`` with ``compiler_options()`` (updated by the given ones)."""
    return jax.jit(fn, compiler_options=_options_for_backend(**(compiler_options or {})),
                   **jit_kwargs)
