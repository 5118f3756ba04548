"""``experiments.train``: the files it writes, a folder that holds one run, and one-line errors
with exit status 2."""

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from agents import runner
from experiments import _common, configs, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_envs=2, num_steps=8, log_interval=2, eval_episodes=32, actor_widths=[8],
            critic_widths=[8], num_minibatches=2)
TINY_ARGS = ["--num_seeds=2", "--total_steps=64", "--config.num_envs=2", "--config.num_steps=8",
             "--config.log_interval=2", "--config.actor_widths=(8,)",
             "--config.critic_widths=(8,)", "--config.num_minibatches=2"]


def _cli(tmp_path, *args, umask: str | None = None):
    command = [sys.executable, "-m", "experiments.train", f"--output_dir={tmp_path}", *args]
    if umask is not None:   # through the shell: no fork of this (multithreaded) JAX process
        command = ["sh", "-c", f'umask {umask} && exec "$@"', "sh", *command]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_run_writes_metrics_plot_and_summary_starting_afresh_with_overwrite(tmp_path):
    """--overwrite removes the previous run's files (a stale divergence.json among them) and
    leaves other files alone."""
    (tmp_path / "divergence.json").write_text("{}")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    summary = train.run("ppo", "CartPole-v1", num_seeds=2, seed=0, total_steps=2 * 8 * 4,
                        output_dir=str(tmp_path), overrides=TINY, quiet=True, overwrite=True)
    for name in ("metrics.json", "learning_curve.png", "summary.json", "run_info.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not (tmp_path / "divergence.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in ("agent", "env", "total_steps", "num_seeds", "final_return_per_seed",
                "final_return_mean", "compile_seconds", "train_seconds", "env_steps_per_second"):
        assert key in on_disk, key
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["total_steps"] == 64 and on_disk["num_seeds"] == 2
    assert len(on_disk["final_return_per_seed"]) == 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["eval_return"]) == 2
    np.testing.assert_allclose(on_disk["final_return_per_seed"],
                               np.asarray(metrics["eval_return"])[:, -1], rtol=1e-6)


def test_cli_run_is_quiet_rounded_and_files_follow_the_umask(tmp_path):
    """A run with checkpoints under ``--quiet``: no orbax log line, the final line with numbers
    rounded for people, and result files of mode 0644 under a umask of 022."""
    out = tmp_path / "run"
    proc = _cli(out, "--quiet", "--checkpoint_every=1", *TINY_ARGS, umask="022")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == "", proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppo on CartPole-v1: final return "), lines
    assert not re.search(r"\d\.\d{5,}", lines[0]), lines[0]
    for name in ("run_info.json", "metrics.json", "summary.json", "learning_curve.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize("args,message", [
    (["--env=NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'; choose one of CartPole-v1"),
    (["--total_steps=0"], "total_steps must be a positive integer, got 0"),
    (["--config.no_such_field=1"], "not a config field"),
    (["--agent=ppo", "--config.polyak=0.5"], "not a field of ppo's config; its fields: "),
    (["--agent=nope"], "unknown agent 'nope'; choose one of ['actor_critic', 'ppo', "),
    (["--config.clip_epsilon=0"], "clip_epsilon must lie in (0, 1), got 0"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, args, message):
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def _no_compile(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("compiled before the checks")
    monkeypatch.setattr(runner.SeedTrainer, "compile", refuse)
    monkeypatch.setattr(runner.SeedTrainer, "init", refuse)


def _unwritable(tmp_path):
    """A folder this process cannot write into: one without write permission, or, as root
    (which ignores permissions), one under /sys (the kernel refuses new files there)."""
    if os.geteuid() == 0:
        return "/sys/gradest_test_output"
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    return str(folder / "out")


@pytest.mark.parametrize("case,message", [
    ("file", "is a file, not a folder"),
    ("under_file", "which is a file"),
    ("unwritable", "not writable|Operation not permitted|Permission denied|Read-only"),
    ("not_empty", "already holds files; pass --resume to continue its run, --overwrite"),
    ("both_flags", "pass one of them"),
])
def test_bad_output_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch, case,
                                                                 message):
    _no_compile(monkeypatch)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "summary.json").write_text("{}")
    output_dir = {"file": tmp_path / "a_file", "under_file": tmp_path / "a_file" / "out",
                  "unwritable": _unwritable(tmp_path), "not_empty": tmp_path / "full",
                  "both_flags": tmp_path / "new"}[case]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(train.UsageError, match=message) as info:
        train.run("ppo", "CartPole-v1", num_seeds=2, seed=0, total_steps=64,
                  output_dir=str(output_dir), overrides=TINY, quiet=True,
                  overwrite=case == "both_flags", resume=case == "both_flags")
    assert "\n" not in str(info.value)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not os.path.exists("/sys/gradest_test_output")


def test_cli_output_folder_that_is_a_file_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "a_file").write_text("x")
    proc = _cli(tmp_path / "a_file" / "out")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "which is a file" in lines[0], proc.stderr


def test_environment_without_a_tuned_config_says_so(tmp_path, monkeypatch, capsys):
    def stop(*args, **kwargs):
        raise RuntimeError("stop before compiling")
    monkeypatch.setattr(runner.SeedTrainer, "compile", stop)
    with pytest.raises(RuntimeError, match="stop before compiling"):
        train.run("ppo", "MountainCar-v0", num_seeds=1, seed=0, total_steps=64,
                  output_dir=str(tmp_path), overrides=TINY, quiet=True)
    notes = [line for line in capsys.readouterr().out.splitlines() if "tuned" in line]
    assert notes == ["note: ppo has no tuned config for MountainCar-v0 (tuned: CartPole-v1, "
                     "Acrobot-v1, Pendulum-v1); using PPOConfig's defaults"]


def test_unsupported_action_space_is_a_usage_error():
    entry = configs.REGISTRY["ppo"]._replace(continuous=False)
    with pytest.raises(ValueError, match="does not support Pendulum-v1's continuous"):
        configs.make_env(entry, "ppo", "Pendulum-v1")


def test_numbers_for_people_are_the_shortest_float32_decimal():
    assert repr(train.for_people(np.float32(0.8))) == "0.8"
    assert train.for_people(np.float32(123.456789), 4) == 123.5
    assert np.isnan(train.for_people(np.float32("nan")))


def test_learning_curve_of_one_log_interval_shows_its_point(tmp_path, monkeypatch):
    """One log interval: each curve is one marked point (a line of one point draws nothing)."""
    shown = {}
    monkeypatch.setattr(_common, "save_figure", lambda fig, path: shown.setdefault("fig", fig))
    metrics = {"env_steps": np.array([[64], [64]]), "eval_return": np.array([[9.0], [11.0]]),
               "train_return": np.array([[8.0], [np.nan]])}
    train.plot(metrics, str(tmp_path / "curve.png"), "one log")
    lines = [line for line in shown["fig"].axes[0].get_lines() if line.get_label()[0] != "_"]
    assert [line.get_label() for line in lines] == ["eval return (mean)", "train return (mean)"]
    for line, mean in zip(lines, (10.0, 8.0)):
        np.testing.assert_array_equal(line.get_xdata(), [64])
        np.testing.assert_array_equal(line.get_ydata(), [mean])
        assert line.get_marker() not in (None, "None", "")
    _common.plt.close(shown["fig"])


def test_config_help_gives_each_field_its_value_and_comment():
    text = train.config_help("sac", "Pendulum-v1")
    assert "--agent=sac, with their values for --env=Pendulum-v1 (tuned;" in text
    fields = [line.split(" = ")[0].strip() for line in text.splitlines()[1:]]
    assert fields == [f.name for f in dataclasses.fields(configs.REGISTRY["sac"].config_cls)]
    assert "  polyak = 0.98: target weight ρ in φ̄ ← ρ φ̄ + (1 − ρ) φ" in text.splitlines()
    assert "(defaults, not tuned;" in train.config_help("ppo", "MountainCar-v0")


def test_importing_the_module_defines_no_flags():
    """Experiment modules may import ``experiments.train`` next to their own ``--seed`` and
    ``--output_dir``: its flags exist only when it runs as the program."""
    from absl import flags
    assert "agent" not in flags.FLAGS and "checkpoint_every" not in flags.FLAGS
