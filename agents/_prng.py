"""The agents' pseudo-random numbers: Philox 4×32 keys, and the lowering that lets them shard.

Training runs start from ``prng_key(seed) = jax.random.key(seed, impl="philox4x32")``. Philox
(Salmon et al., 2011) is counter-based like JAX's default threefry and as good for Monte Carlo,
but XLA gets it unrolled on every backend, while threefry's CPU lowering is a rolled loop of
rounds whose per-iteration overhead adds up in programs as small as one environment step.
Measured on the 2-core CPU machines (jax 0.10.2), side by side in one process: PPO on CartPole
with PureJaxRL's configuration 6–12% more env steps per second at about the same compile time,
SAC on Pendulum ~6% less time per step. ``train(key)`` accepts a key of any implementation.

Philox multiplies with ``lax.mulhi``, which jax 0.10.2 lowers to ``chlo.mulhi``; a program
partitioned over several devices (Shardy) then fails with "Unable to convert MHLO to StableHLO".
``lower_mulhi_portably`` registers JAX's own portable lowering of the same primitive (widen,
multiply, shift: the same bits) in its place; the sharded trainer calls it before compiling
for more than one device (``tests/test_agents_prng.py``). It changes how mulhi is lowered,
never what it computes; it is not the default because on one CPU device the widened multiply
is ~1.5% slower and compiles ~0.5 s longer.
"""

from __future__ import annotations

import jax

KEY_IMPL = "philox4x32"


def prng_key(seed: int) -> jax.Array:
    """The root key of a training run: ``jax.random.key(seed, impl=KEY_IMPL)``; the command
    line, the experiments and the benchmarks all start here."""
    return jax.random.key(seed, impl=KEY_IMPL)


_PORTABLE = False


def lower_mulhi_portably() -> bool:
    """Lowers ``lax.mulhi`` by widening (JAX's own rule for jaxlibs without ``chlo.mulhi``), for
    every program compiled from now on in this process. Returns whether it is in place: where
    this JAX lacks those internals nothing is changed. The first call clears JAX's caches, since
    inner jitted functions (``jax.random``'s samplers) keep their lowering."""
    global _PORTABLE
    if _PORTABLE:
        return True
    try:
        from jax._src.interpreters import mlir
        from jax._src.lax import lax as lax_internal
        impl, primitive = lax_internal._mulhi_impl, lax_internal.mulhi_p
    except (ImportError, AttributeError):
        return False
    mlir.register_lowering(primitive, mlir.lower_fun(impl, multiple_results=False))
    jax.clear_caches()
    _PORTABLE = True
    return True
