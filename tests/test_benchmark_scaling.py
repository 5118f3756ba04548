"""``experiments.benchmark_scaling``: the JSON fields and the PNG, the device sweep with and
without ``train_seeds(devices=...)``. No timing is asserted.

The fast tests replace ``train_seeds`` by a stand-in (each real point compiles for 10–35 s on
two CPU cores); the slow ones run the real agents at tiny sizes, one of them on two host devices.
"""

import dataclasses
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from experiments import benchmark_scaling as bs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"ppo": dict(num_envs=2, num_steps=16, actor_widths=(8,), critic_widths=(8,),
                    num_epochs=1, num_minibatches=2, log_interval=4),
        "sac": dict(actor_widths=(8,), critic_widths=(8,), batch_size=32, buffer_size=512,
                    log_interval=64)}
ROW_FIELDS = ("agent", "env", "sweep", "num_seeds", "num_devices", "compile_s", "run_s",
              "env_steps_per_seed", "env_steps", "env_steps_per_second",
              "env_steps_per_second_per_seed", "final_return_mean")


def _fake_train_seeds(calls, takes_devices):
    def fake(stages, num_seeds, seed, devices=None, *, compiler_options=None):
        total = stages.config.total_steps
        calls.append((total, num_seeds, None if devices is None else len(devices)))
        steps = np.tile([total // 2, total], (num_seeds, 1))
        out = types.SimpleNamespace(metrics={"env_steps": steps,
                                             "eval_return": np.zeros((num_seeds, 2))})
        return out, 1.0, 0.5 * num_seeds

    if takes_devices:
        return fake
    return lambda stages, num_seeds, seed, *, compiler_options=None: fake(
        stages, num_seeds, seed, compiler_options=compiler_options)


def _check_outputs(tmp_path, result):
    on_disk = json.loads((tmp_path / "scaling_benchmark.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert (tmp_path / "scaling.png").stat().st_size > 0
    for key in ("platform", "device_kind", "device_count", "jax"):
        assert key in on_disk["device"], key
    assert on_disk["jax"] and set(on_disk["config"]) == set(on_disk["agents"])
    for row in on_disk["seed_rows"] + on_disk["device_rows"]:
        for key in ROW_FIELDS:
            assert key in row, key
    return on_disk


def test_suite_writes_json_and_png(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bs.runner, "train_seeds", _fake_train_seeds(calls, False))
    result = bs.run_scaling_suite(str(tmp_path), seed_counts=(2, 1), ppo_steps=1024,
                                  sac_steps=512, repeats=2)
    on_disk = _check_outputs(tmp_path, result)
    assert [(r["agent"], r["num_seeds"]) for r in on_disk["seed_rows"]] == [
        ("ppo", 1), ("ppo", 2), ("sac", 1), ("sac", 2)]
    assert on_disk["device_rows"] == [] and on_disk["device_sweep"]["status"] == "not run"
    assert len(calls) == 8  # two repeats of each point
    row = on_disk["seed_rows"][1]
    assert row["env_steps"] == 2 * 1024 and row["env_steps_per_seed"] == 1024
    assert row["env_steps_per_second"] == pytest.approx(2 * 1024 / 1.0)
    assert row["env_steps_per_second_per_seed"] == pytest.approx(1024 / 1.0)
    # The PPO config is PureJaxRL's (the agents suite's), the SAC config the tuned Pendulum one.
    ppo_config = on_disk["config"]["ppo"]
    assert (ppo_config["num_envs"], ppo_config["num_steps"], ppo_config["learning_rate"]) == (
        4, 128, 2.5e-4)
    assert on_disk["config"]["sac"]["learning_rate"] == 1e-2


def _two_devices(monkeypatch):
    info = bs.device_info()
    monkeypatch.setattr(bs, "device_info", lambda: {**info, "device_count": 2})


def test_device_sweep_when_train_seeds_takes_devices(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bs.runner, "train_seeds", _fake_train_seeds(calls, True))
    _two_devices(monkeypatch)
    result = bs.run_scaling_suite(str(tmp_path), seed_counts=(1, 3, 4), ppo_steps=1024,
                                  sac_steps=512, agents=("ppo",))
    on_disk = _check_outputs(tmp_path, result)
    sweep = on_disk["device_sweep"]
    assert sweep["status"] == "run" and sweep["device_counts"] == [1, 2]
    assert sweep["num_seeds"] == 4
    assert [r["num_devices"] for r in on_disk["seed_rows"]] == [1, 1, 2]
    assert [(r["num_seeds"], r["num_devices"]) for r in on_disk["device_rows"]] == [(4, 1), (4, 2)]


def test_device_sweep_skipped_without_devices_argument(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bs.runner, "train_seeds", _fake_train_seeds(calls, False))
    _two_devices(monkeypatch)
    result = bs.run_scaling_suite(str(tmp_path), seed_counts=(1, 2), agents=("sac",),
                                  sac_steps=512)
    assert result["device_sweep"]["status"] == "skipped" and result["device_rows"] == []
    assert "device sweep skipped" in capsys.readouterr().out
    assert all(r["num_devices"] == 1 for r in result["seed_rows"])


def test_ppo_config_is_the_agents_suites():
    # In a subprocess: experiments.benchmark_agents defines absl flags on import, which may
    # collide with those of other modules imported here.
    code = ("import dataclasses, json; from experiments import benchmark_agents; "
            "print(json.dumps(dataclasses.asdict(benchmark_agents.PUREJAXRL_CARTPOLE)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = json.loads(json.dumps(bs.PPO_OVERRIDES))
    assert ours == {k: v for k, v in reference.items() if k not in ("total_steps", "verbose")}


def test_sizes_from_flags():
    assert bs.sizes_from_flags(False, None, None, None, None) == bs.FULL
    quick = bs.sizes_from_flags(True, ["1", "2"], 4096, None, 3)
    assert quick == dataclasses.replace(bs.QUICK, seed_counts=(1, 2), ppo_steps=4096, repeats=3)
    assert bs.default_device_counts(1) == [1]
    assert bs.default_device_counts(6) == [1, 2, 4, 6]


@pytest.mark.slow
def test_real_agents_tiny(tmp_path):
    result = bs.run_scaling_suite(str(tmp_path), seed_counts=(1, 2), ppo_steps=64, sac_steps=320,
                                  overrides=TINY)
    on_disk = _check_outputs(tmp_path, result)
    assert len(on_disk["seed_rows"]) == 4
    assert [r["env_steps_per_seed"] for r in on_disk["seed_rows"]] == [64, 64, 320, 320]


@pytest.mark.slow
def test_command_line_on_two_host_devices(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_scaling", f"--output_dir={tmp_path}",
         "--agents=ppo", "--seed_counts=1,2", "--ppo_steps=512"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    on_disk = json.loads((tmp_path / "scaling_benchmark.json").read_text())
    assert on_disk["device"]["device_count"] == 2
    assert (tmp_path / "scaling.png").stat().st_size > 0
    sweep = on_disk["device_sweep"]
    if on_disk["train_seeds_takes_devices"]:
        assert sweep["status"] == "run"
        assert [r["num_devices"] for r in on_disk["device_rows"]] == [1, 2]
    else:
        assert sweep["status"] == "skipped" and "device sweep skipped" in proc.stdout
