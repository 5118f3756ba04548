"""``agents.jit``: the CPU compiler options are applied on CPU only, can be overridden, and leave
the arithmetic that of plain ``jax.jit`` (bitwise for elementwise functions, matmuls and sums;
to float rounding for a whole SAC update, whose fused reductions may add in another order)."""

import functools

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import gradest
from agents import sac
from agents import _jit
from agents._jit import CPU_COMPILER_OPTIONS


def test_options_per_backend_and_overrides():
    assert agents.compiler_options("cpu") == CPU_COMPILER_OPTIONS
    assert agents.compiler_options("gpu") is None
    assert agents.compiler_options("gpu", xla_backend_optimization_level=1) == {
        "xla_backend_optimization_level": 1}
    restored = agents.compiler_options("cpu", xla_cpu_prefer_vector_width=256)
    assert restored == {"xla_cpu_prefer_vector_width": 256}
    assert agents.compiler_options("cpu") == CPU_COMPILER_OPTIONS  # the default is not mutated


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are CPU options")
def test_jit_passes_the_default_and_given_options_to_xla(monkeypatch):
    # XLA refuses an unknown option at compile time: proof that each kind of option reaches it.
    f = agents.jit(lambda x: x + 1, compiler_options={"xla_cpu_no_such_option": 1})
    with pytest.raises(Exception, match="xla_cpu_no_such_option"):
        f.lower(1.0).compile()
    agents.jit(lambda x: x + 1).lower(1.0).compile()  # the real defaults compile
    monkeypatch.setitem(_jit.CPU_COMPILER_OPTIONS, "xla_cpu_no_such_default", 1)
    with pytest.raises(Exception, match="xla_cpu_no_such_default"):
        agents.jit(lambda x: x + 2).lower(1.0).compile()


def test_elementwise_matmul_and_sums_are_bitwise_those_of_jax_jit():
    x = jax.random.normal(jax.random.key(0), (256, 64)) * 3
    w = jax.random.normal(jax.random.key(1), (64, 64))
    fns = [jnp.exp, jnp.tanh, jax.nn.sigmoid, lambda x: jnp.log(jnp.abs(x) + 1e-3),
           lambda x: jnp.sum(x, axis=1), jnp.sum, lambda x: x @ w,
           jax.grad(lambda x: jnp.sum(jax.nn.swish(x @ w)))]
    for f in fns:
        np.testing.assert_array_equal(np.asarray(agents.jit(f)(x)), np.asarray(jax.jit(f)(x)))


def test_one_sac_update_agrees_with_jax_jit_to_rounding():
    env, env_params = gymnax.make("Pendulum-v1")
    agent = sac.make_setup(sac.SACConfig(warmup_steps=256, batch_size=256, verbose=False), env,
                           env_params, gradest.pathwise())
    state = sac.init_state(agent, agents.prng_key(0))
    state, _ = jax.jit(lambda s, k: jax.lax.scan(functools.partial(sac.warmup_step, agent), s,
                                                 jax.random.split(k, 256)))(state,
                                                                            agents.prng_key(1))
    def update(s, k):
        return sac.learn(agent, s, k)
    ours, plain = agents.jit(update)(state, agents.prng_key(2)), jax.jit(update)(
        state, agents.prng_key(2))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain)):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind == "f":
            # float32 rounding: a few ulps of the largest entry of each array.
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * (np.max(np.abs(b)) + 1e-12))
        else:
            np.testing.assert_array_equal(a, b)
