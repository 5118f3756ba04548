"""Seeds sharded over devices, and reproducibility.

* 4 seeds over 4 (forced host) CPU devices give the results of the same 4 seeds on 1 device;
* the same seed gives the same result; 8 seeds under ``vmap`` give the results of each seed
  trained alone;
* ``run_info.json`` records the seed, config, package versions and devices.

Bit for bit or to float tolerance: XLA compiles the vmapped program for the number of seeds
each device holds (its batch), and the CPU backend picks its kernels, vectorization and loop
orders by shape, so a float32 reduction or matrix product over a batch of 4 and of 1 can round
differently in the last bit (observed: at most ~1e-6 absolute after 4 log intervals, on 14 of
25 output arrays; the evaluation returns and env steps agree exactly). The comparisons below
are exact where they hold (same program: same seed twice, chunked vs whole run in
``test_train_checkpoint``) and ``allclose`` where the per-device batch differs. Over a long run
such differences can grow (an action sampled near a probability threshold flips), so runs on
different device counts agree statistically, not exactly.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import agents
from agents import runner
from experiments import configs, train
from tests.conftest import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL, ATOL = 1e-4, 1e-5

_SCRIPT = """
import sys, jax, numpy as np
from agents import runner
from experiments import configs
agent, env_id, total, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
overrides = eval(sys.argv[5])
assert len(jax.devices()) == 4, jax.devices()
entry, config = configs.make_config(agent, env_id, overrides, total, True)
env, env_params = configs.make_env(entry, agent, env_id)
stages = configs.make_stages(entry, config, env, env_params)
arrays = {}
for d in (1, 4):
    output, _, _ = runner.train_seeds(stages, 4, 5, devices=jax.devices()[:d])
    for i, leaf in enumerate(jax.tree.leaves(output)):
        arrays[f"{d}/{i}"] = np.asarray(leaf)
np.savez(out, **arrays)
"""


# SAC (replay buffer included) runs in the slow suite: it compiles two more programs.
@pytest.mark.parametrize("agent", ["ppo", pytest.param("sac", marks=pytest.mark.slow)])
def test_four_devices_give_the_results_of_one(tmp_path, agent):
    env_id, total, overrides = TINY[agent]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "out.npz"
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, agent, env_id, str(total), str(out),
                           repr(overrides)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    arrays = np.load(out)
    names = sorted(k.split("/")[1] for k in arrays if k.startswith("1/"))
    assert names and len(names) == sum(k.startswith("4/") for k in arrays)
    for name in names:
        np.testing.assert_allclose(arrays[f"4/{name}"], arrays[f"1/{name}"], rtol=RTOL,
                                   atol=ATOL, err_msg=f"leaf {name}")


def _setup(agent):
    env_id, total, overrides = TINY[agent]
    entry, config = configs.make_config(agent, env_id, overrides, total, quiet=True)
    env, env_params = configs.make_env(entry, agent, env_id)
    return entry, config, env, env_params


@pytest.fixture(autouse=True)
def _small_eval(monkeypatch):
    monkeypatch.setattr(train, "MIN_EVAL_EPISODES", 1)


@pytest.mark.slow
def test_same_seed_same_result_and_vmapped_seeds_equal_each_alone(compile_cache):
    entry, config, env, env_params = _setup("ppo")
    stages = configs.make_stages(entry, config, env, env_params)
    num_seeds, seed = 8, 11
    first, _, _ = runner.train_seeds(stages, num_seeds, seed)
    again, _, _ = runner.train_seeds(stages, num_seeds, seed)
    jax.tree.map(np.testing.assert_array_equal, first, again)
    other, _, _ = runner.train_seeds(stages, num_seeds, seed + 1)
    assert not np.array_equal(first.metrics["actor_loss"], other.metrics["actor_loss"])

    # Each seed alone (plain jit, no vmap) with its key fold_in(key(seed), i).
    train_one = jax.jit(entry.make_train(config, env, env_params))
    base = agents.prng_key(seed)
    for i in range(num_seeds):
        alone = jax.device_get(train_one(jax.random.fold_in(base, i)))
        in_batch = jax.tree.map(lambda x: x[i], first)
        np.testing.assert_array_equal(alone.metrics["env_steps"], in_batch.metrics["env_steps"])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL),
                     alone, in_batch)


def test_run_info_is_written_beside_the_results(tmp_path):
    env_id, total, overrides = TINY["ppo"]
    summary = train.run("ppo", env_id, num_seeds=2, seed=7, total_steps=total,
                        output_dir=str(tmp_path), overrides=overrides, quiet=True)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["seed"] == 7 and info["num_seeds"] == 2 and info["agent"] == "ppo"
    assert info["config"]["num_envs"] == 2 and info["config"]["actor_widths"] == [8]
    for package in ("jax", "jaxlib", "flax", "optax", "gymnax", "numpy", "orbax-checkpoint"):
        assert info["packages"][package], package
    assert info["devices"] == [str(d) for d in jax.devices()[:1]]
    assert info["process_count"] == 1 and info["python"] and info["platform"]
    assert summary["run_info"] == info
    assert summary["seed"] == 7


def test_seeds_use_the_most_devices_that_divide_them():
    devices = ["d0", "d1", "d2", "d3"]
    assert runner.seed_devices(8, devices) == devices
    assert runner.seed_devices(6, devices) == devices[:3]
    assert runner.seed_devices(7, devices) == devices[:1]
    assert runner.seed_devices(2, devices) == devices[:2]
    with pytest.raises(ValueError, match="num_seeds must be positive"):
        runner.seed_devices(0, devices)
