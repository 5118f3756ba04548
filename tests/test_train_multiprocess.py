"""``experiments.train --distributed``: two processes on this machine train as one.

Two processes with two (forced host) CPU devices each join through
``jax.distributed.initialize`` (coordinator on a free localhost port, gloo collectives for the
cross-process gather), train 4 seeds of the tiny PPO run with one seed per device, checkpoint
into a shared directory, and process 0 alone writes the files. Their metrics and the full final
training state (restored from the shared checkpoint) match a run of the same seeds in one
process on one device.

To float tolerance, not bit for bit, for the reason given in ``test_train_sharding``: each
device runs the vmapped program on its own share of the seeds, here a batch of 1 against a batch
of 4 on the single device, and XLA's CPU kernels (vectorization, reduction order) depend on
that shape, so float32 results can differ in the last bits. Environment steps and PRNG keys,
which involve no float arithmetic, must agree exactly.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from agents import runner
from experiments import configs, train
from tests.conftest import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL, ATOL = 1e-4, 1e-5
NUM_SEEDS, SEED, CHECKPOINT_EVERY = 4, 5, 2
TIMEOUT_S = 300
ENV_ID, TOTAL, _OVERRIDES = TINY["ppo"]
# The command line asks for at least train.MIN_EVAL_EPISODES evaluation episodes.
OVERRIDES = {**_OVERRIDES, "eval_episodes": train.MIN_EVAL_EPISODES}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _config_args(overrides: dict) -> list[str]:
    return [f"--config.{k}={tuple(v)!r}" if isinstance(v, list) else f"--config.{k}={v}"
            for k, v in overrides.items()]


def _process_env() -> dict:
    """This environment with two host CPU devices per process, no cluster settings of the
    caller's, and no HTTP proxies (the coordinator is reached over localhost gRPC)."""
    env = {k: v for k, v in os.environ.items()
           if "_proxy" not in k.lower() and k not in
           ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
            "JAX_LOCAL_DEVICE_IDS")}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    return env


def _tail(path, n=3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no output)"


def _restored_state(directory, config, env, env_params, entry):
    """(carry, metrics) of the latest checkpoint in ``directory``, restored onto this process's
    one device."""
    stages = configs.make_stages(entry, config, env, env_params)
    trainer = runner.SeedTrainer(stages, NUM_SEEDS, SEED)
    meta = {"agent": "ppo", "env": ENV_ID, "seed": SEED, "num_seeds": NUM_SEEDS,
            "num_logs": stages.num_logs, "config": configs.config_dict_of(config)}
    ckpt = runner.Checkpoints(str(directory), meta)
    try:
        logs_done, carry, metrics, damaged = ckpt.restore(trainer)
    finally:
        ckpt.close()
    assert logs_done == stages.num_logs and not damaged
    return jax.device_get(trainer.saveable(carry)), metrics


@pytest.mark.slow
def test_two_processes_give_the_results_of_one(tmp_path):
    port = _free_port()
    shared_ckpt = tmp_path / "checkpoints"
    procs, logs = [], [tmp_path / f"process{i}.log" for i in range(2)]
    try:
        for i in range(2):
            command = [sys.executable, "-m", "experiments.train", "--distributed",
                       f"--coordinator_address=localhost:{port}", "--num_processes=2",
                       f"--process_id={i}", "--agent=ppo", f"--env={ENV_ID}",
                       f"--num_seeds={NUM_SEEDS}", f"--seed={SEED}", f"--total_steps={TOTAL}",
                       f"--output_dir={tmp_path / f'out{i}'}",
                       f"--checkpoint_every={CHECKPOINT_EVERY}",
                       f"--checkpoint_dir={shared_ckpt}", "--quiet", *_config_args(OVERRIDES)]
            with open(logs[i], "w") as log:
                procs.append(subprocess.Popen(command, cwd=ROOT, env=_process_env(),
                                              stdout=log, stderr=subprocess.STDOUT))

        # Meanwhile the same seeds in this process, on one device.
        single = tmp_path / "single"
        train.run("ppo", ENV_ID, NUM_SEEDS, SEED, TOTAL, str(single), OVERRIDES, quiet=True,
                  checkpoint_every=CHECKPOINT_EVERY, checkpoint_dir=str(single / "checkpoints"))

        # Until both are done; one that fails fails the test at once (its partner would wait
        # for it until JAX's timeouts).
        deadline = time.monotonic() + TIMEOUT_S
        while any(proc.poll() is None for proc in procs):
            for i, proc in enumerate(procs):
                assert proc.poll() in (None, 0), (f"process {i}, exit {proc.returncode}:\n"
                                                  f"{_tail(logs[i])}")
            if time.monotonic() > deadline:
                running = [i for i, proc in enumerate(procs) if proc.poll() is None]
                pytest.fail(f"process(es) {running} still running after {TIMEOUT_S}s:\n"
                            f"{_tail(logs[running[0]])}")
            time.sleep(0.1)
        for i, proc in enumerate(procs):
            assert proc.returncode == 0, f"process {i}, exit {proc.returncode}:\n{_tail(logs[i])}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # Only process 0 wrote files (process 1 did not even make its output directory).
    out0 = tmp_path / "out0"
    assert sorted(p.name for p in out0.iterdir()) == [
        "learning_curve.png", "metrics.json", "run_info.json", "summary.json"]
    assert not (tmp_path / "out1").exists()

    # One job over 2 processes × 2 devices, one seed per device.
    summary = json.loads((out0 / "summary.json").read_text())
    info = json.loads((out0 / "run_info.json").read_text())
    assert info["process_count"] == 2 and len(info["devices"]) == 4
    assert summary["num_devices"] == 4 and summary["run_info"] == info

    # The metrics it wrote are those of the single-process run.
    metrics = json.loads((out0 / "metrics.json").read_text())
    expected = json.loads((single / "metrics.json").read_text())
    assert sorted(metrics) == sorted(expected)
    np.testing.assert_array_equal(metrics["env_steps"], expected["env_steps"])
    for name in expected:
        np.testing.assert_allclose(np.asarray(metrics[name], float),
                                   np.asarray(expected[name], float), rtol=RTOL, atol=ATOL,
                                   err_msg=name)
    expected_summary = json.loads((single / "summary.json").read_text())
    np.testing.assert_allclose(summary["final_return_per_seed"],
                               expected_summary["final_return_per_seed"], rtol=RTOL, atol=ATOL)

    # So is the final training state of every seed: parameters, optimizer and environment
    # states, observation statistics, counters, PRNG keys (key data, exactly).
    entry, config = configs.make_config("ppo", ENV_ID, OVERRIDES, TOTAL, quiet=True)
    env, env_params = configs.make_env(entry, "ppo", ENV_ID)
    state, saved_metrics = _restored_state(shared_ckpt, config, env, env_params, entry)
    ref_state, ref_metrics = _restored_state(single / "checkpoints", config, env, env_params,
                                             entry)
    leaves, ref_leaves = jax.tree.leaves(state), jax.tree.leaves(ref_state)
    assert len(leaves) == len(ref_leaves) > 0
    for i, (leaf, ref) in enumerate(zip(leaves, ref_leaves)):
        assert leaf.shape == ref.shape and leaf.dtype == ref.dtype, i
        if np.issubdtype(ref.dtype, np.inexact):
            np.testing.assert_allclose(leaf, ref, rtol=RTOL, atol=ATOL, err_msg=f"leaf {i}")
        else:
            np.testing.assert_array_equal(leaf, ref, err_msg=f"leaf {i}")
    for name in ref_metrics:
        np.testing.assert_allclose(saved_metrics[name], ref_metrics[name], rtol=RTOL, atol=ATOL,
                                   err_msg=name)


def test_distributed_arguments_come_from_flags_then_environment():
    environ = {"JAX_COORDINATOR_ADDRESS": "head:1234", "JAX_NUM_PROCESSES": "4",
               "JAX_PROCESS_ID": "3"}
    argv = ["train", "--distributed", "--num_processes=2", "--process_id", "1"]
    assert train.distributed_args(argv, environ) == {
        "coordinator_address": "head:1234", "num_processes": 2, "process_id": 1}
    # Nothing given: left to JAX's cluster detection.
    assert train.distributed_args(["train", "--distributed"], {}) == {}
    with pytest.raises(ValueError, match="JAX_PROCESS_ID must be an integer"):
        train.distributed_args(["train"], {"JAX_PROCESS_ID": "one"})


@pytest.mark.parametrize("args,message", [
    (["--distributed", "--coordinator_address=localhost:1", "--num_processes=2",
      "--process_id=two"], "--process_id must be an integer"),
    (["--distributed", "--coordinator_address=localhost:1", "--num_processes=2",
      "--process_id=2"], "process_id < num_processes"),
    (["--num_processes=2"], "--num_processes needs --distributed"),
])
def test_bad_distributed_setup_is_one_line_and_exit_status_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "experiments.train", f"--output_dir={tmp_path}",
                           *args], cwd=ROOT, env=_process_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
