"""Every agent's whole training program lowers for ``cuda`` and ``tpu`` as well as the CPU the
tests run on (``jax.export`` lowers for any platform without its device): code that only
compiles on one backend, such as a patched lowering, fails here. Tiny networks and budgets:
lowering, not compiling, so each case takes a few seconds."""

import re

import gymnax
import jax
import pytest

from experiments import configs

PLATFORMS = ("cuda", "tpu")
SMALL = {"actor_widths": [8], "critic_widths": [8], "eval_episodes": 2, "verbose": False}
ON_POLICY = {"num_envs": 2, "num_steps": 8, "total_steps": 2 * 8 * 2, "log_interval": 1}
OFF_POLICY = {"buffer_size": 16, "warmup_steps": 8, "batch_size": 8, "log_interval": 4,
              "total_steps": 16}
# (agent, env, config overrides): each agent, SAC with continuous and discrete actions.
CASES = [
    ("ppo", "CartPole-v1", {**ON_POLICY, "num_minibatches": 2, "num_epochs": 1}),
    ("reinforce", "CartPole-v1", ON_POLICY),
    ("actor_critic", "Acrobot-v1", ON_POLICY),
    ("sac", "Pendulum-v1", OFF_POLICY),
    ("sac", "CartPole-v1", OFF_POLICY),
]


def _exported(agent, env_id, overrides, platforms):
    """(export for ``platforms``, the function exported, its keys' shape): one case's training
    program over two seeds, ``jit(vmap(train))`` as the command line runs it."""
    entry = configs.REGISTRY[agent]
    config = entry.get_config(env_id)
    config.update({**SMALL, **overrides})
    env, env_params = gymnax.make(env_id)
    train = jax.vmap(entry.make_train(configs.build(entry, config), env, env_params))
    keys = jax.ShapeDtypeStruct((2,), jax.random.key(0).dtype)
    return jax.export.export(jax.jit(train), platforms=platforms)(keys), train, keys


@pytest.mark.parametrize("agent,env_id,overrides", CASES, ids=[f"{a}-{e}" for a, e, _ in CASES])
def test_train_lowers_for_cuda_and_tpu(agent, env_id, overrides):
    exported, train, keys = _exported(agent, env_id, overrides, PLATFORMS)
    assert exported.platforms == PLATFORMS
    module = exported.mlir_module()
    # The seeds' outputs come back: the program is the training run, not a stub of it.
    assert len(exported.out_avals) == len(jax.tree.leaves(jax.eval_shape(train, keys)))
    assert "stablehlo.while" in module


@pytest.mark.parametrize("agent,env_id,overrides", CASES, ids=[f"{a}-{e}" for a, e, _ in CASES])
def test_train_on_the_cpu_calls_no_lapack_kernel(agent, env_id, overrides):
    """jaxlib's batched LAPACK kernels (flax's orthogonal initializer under ``vmap`` over seeds
    calls two) can hang a 2-core CPU for good (``agents.networks.orthogonal``); the agents'
    CPU program must call none."""
    exported, _, _ = _exported(agent, env_id, overrides, ("cpu",))
    module = exported.mlir_module()
    assert "stablehlo.while" in module
    assert not re.findall(r"custom_call @lapack\w*", module)


def test_the_lapack_check_sees_flax_orthogonal_initializer():
    """The control of the test above: the same search finds the kernels in flax's initializer."""
    keys = jax.ShapeDtypeStruct((2,), jax.random.key(0).dtype)
    flax_init = jax.vmap(lambda k: jax.nn.initializers.orthogonal()(k, (8, 8)))
    control = jax.export.export(jax.jit(flax_init), platforms=("cpu",))(keys).mlir_module()
    assert re.findall(r"custom_call @lapack\w*", control)
