"""Suite-wide settings and shared fixtures.

Every test runs with ``jax_numpy_rank_promotion="raise"``: an operation between arrays of
different ranks must broadcast explicitly (``x[..., None]``, ``reshape``), so a shape mistake
fails loudly instead of silently broadcasting. The environment variable carries the setting into
the subprocesses some tests start (the command lines, the multi-device runs).
"""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"


@pytest.fixture
def compile_cache(tmp_path_factory):
    """Shares compiled programs between the runs of a test through JAX's persistent
    compilation cache (in a temporary folder), then restores the settings."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    old = {n: getattr(jax.config, n) for n in names}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield
    for n, v in old.items():
        jax.config.update(n, v)


@pytest.fixture(scope="module")
def fast_compiles():
    """Compiles with most of XLA's optimizations off for a module's tests (tiny programs, each
    compiled once, where optimizing costs more than it saves), then restores the setting."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


# Tiny runs of 4 log intervals per agent: (env, total_steps, config overrides), shared by the
# checkpoint and sharding tests. eval_episodes below the command line's minimum of 32 keeps
# compilation short; those tests lower the minimum.
TINY = {
    "ppo": ("CartPole-v1", 2 * 8 * 4, dict(num_envs=2, num_steps=8, log_interval=1,
                                           eval_episodes=2, actor_widths=[8], critic_widths=[8],
                                           num_minibatches=2, num_epochs=1)),
    "sac": ("Pendulum-v1", 8 + 4 * 8, dict(buffer_size=24, warmup_steps=8, batch_size=8,
                                           log_interval=8, eval_episodes=1, actor_widths=[8],
                                           critic_widths=[8])),
}
