"""``experiments.train``: the files it writes, and one-line errors with exit status 2."""

import json
import os
import subprocess
import sys

import pytest

from experiments import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_envs=2, num_steps=8, log_interval=2, eval_episodes=32, actor_widths=[8],
            critic_widths=[8], num_minibatches=2)


def test_run_writes_metrics_plot_and_summary(tmp_path):
    summary = train.run("ppo", "CartPole-v1", num_seeds=2, seed=0, total_steps=2 * 8 * 4,
                        output_dir=str(tmp_path), overrides=TINY, quiet=True)
    for name in ("metrics.json", "learning_curve.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in ("agent", "env", "total_steps", "num_seeds", "final_return_per_seed",
                "final_return_mean", "compile_seconds", "train_seconds", "env_steps_per_second"):
        assert key in on_disk, key
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["total_steps"] == 64 and on_disk["num_seeds"] == 2
    assert len(on_disk["final_return_per_seed"]) == 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["eval_return"]) == 2


@pytest.mark.parametrize("args,message", [
    (["--env=NoSuchEnv-v0"], "unknown environment"),
    (["--total_steps=0"], "budget must be positive"),
    (["--config.no_such_field=1"], "not a config field"),
    (["--agent=ppo", "--config.polyak=0.5"], "not a field of ppo's config"),
    (["--agent=nope"], "unknown agent"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "experiments.train", f"--output_dir={tmp_path}",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_unsupported_action_space_is_a_usage_error():
    entry = train.configs.REGISTRY["ppo"]._replace(continuous=False)
    with pytest.raises(train.UsageError, match="does not support Pendulum-v1's continuous"):
        train.make_env(entry, "ppo", "Pendulum-v1")


def test_importing_the_module_defines_no_flags():
    """Experiment modules import ``experiments.train`` as a library next to their own ``--seed``
    and ``--output_dir``: its flags exist only when it runs as the program."""
    from absl import flags
    assert "agent" not in flags.FLAGS and "checkpoint_every" not in flags.FLAGS
