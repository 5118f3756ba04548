"""The agents' Philox keys: what they draw, and that they run sharded over several devices."""

import os
import subprocess
import sys

import jax
import numpy as np

import agents
from agents import _prng

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = """
import jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from agents import _prng
assert len(jax.devices()) == 4
keys = jax.random.key_data(jax.random.split(_prng.prng_key(3), 8))
def draw(data):
    keys = jax.random.wrap_key_data(data, impl=_prng.KEY_IMPL)
    return jax.vmap(lambda k: jax.random.normal(jax.random.split(k)[1], (5,)))(keys)
plain = np.asarray(jax.jit(draw)(keys))
sharding = NamedSharding(Mesh(np.array(jax.devices()), ("seeds",)), P("seeds"))
sharded = jax.jit(draw, in_shardings=sharding, out_shardings=sharding)
try:
    sharded(jax.device_put(keys, sharding))
    print("chlo.mulhi lowering works sharded here")
except Exception as e:
    assert "StableHLO" in str(e), e
    print("chlo.mulhi lowering fails sharded")
assert _prng.lower_mulhi_portably()
sharded = jax.jit(draw, in_shardings=sharding, out_shardings=sharding)
np.testing.assert_array_equal(np.asarray(sharded(jax.device_put(keys, sharding))), plain)
print("ok")
"""


def test_prng_key_is_philox_and_deterministic():
    key = agents.prng_key(7)
    assert str(jax.random.key_impl(key)) == _prng.KEY_IMPL
    a = jax.random.uniform(jax.random.split(key)[0], (1000,))
    b = jax.random.uniform(jax.random.split(agents.prng_key(7))[0], (1000,))
    np.testing.assert_array_equal(a, b)
    # Uniform on [0, 1): mean 1/2 with standard error (1/12/1000)^0.5 ≈ 0.0091; 5 s.e.
    assert abs(float(a.mean()) - 0.5) < 5 * (1 / 12 / 1000) ** 0.5
    assert not np.array_equal(a, jax.random.uniform(jax.random.split(agents.prng_key(8))[0],
                                                    (1000,)))


def test_portable_mulhi_lowering_gives_the_same_bits_sharded():
    """Four forced host devices: the partitioned program draws exactly the unpartitioned bits
    once the portable mulhi lowering is in place."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_native_mulhi_is_the_high_word_of_the_product():
    x = np.asarray(jax.random.bits(jax.random.key(0), (4096,), np.uint32))
    y = np.asarray(jax.random.bits(jax.random.key(1), (4096,), np.uint32))
    expected = ((x.astype(np.uint64) * y.astype(np.uint64)) >> 32).astype(np.uint32)
    native = np.asarray(jax.jit(jax.lax.mulhi)(x, y))
    np.testing.assert_array_equal(native, expected)
