"""``experiments.train`` on bad input and faults: configurations are rejected in one line
before anything compiles; a diverging run stops with the log interval, env step and seeds,
keeping its last good checkpoint (``agents.runner``); result files are written atomically."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from agents import runner
from experiments import _common, configs, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PPO = dict(num_envs=2, num_steps=8, log_interval=1, eval_episodes=2, actor_widths=[8],
           critic_widths=[8], num_minibatches=2, num_epochs=1)


@pytest.fixture(autouse=True)
def _small_eval(monkeypatch):
    monkeypatch.setattr(train, "MIN_EVAL_EPISODES", 1)


@pytest.mark.parametrize("agent,env_id,overrides,message", [
    ("ppo", "CartPole-v1", {"num_envs": 0}, "num_envs must be a positive integer, got 0"),
    ("ppo", "CartPole-v1", {"num_minibatches": -2}, "num_minibatches must be a positive integer"),
    ("ppo", "CartPole-v1", {"actor_widths": [8, 0]}, "actor_widths must be positive layer widths"),
    ("ppo", "CartPole-v1", {"learning_rate": float("nan")}, "learning_rate must be a finite"),
    ("ppo", "CartPole-v1", {"ent_coef": float("inf")}, "ent_coef must be a finite"),
    ("ppo", "CartPole-v1", {"gamma": 1.5}, "gamma must lie in [0, 1]"),
    ("ppo", "CartPole-v1", {"clip_epsilon": 0.0}, "clip_epsilon must lie in (0, 1), got 0"),
    ("ppo", "CartPole-v1", {"activation": "sigmoidish"},
     "unknown activation 'sigmoidish'; choose one of ['tanh', 'relu'"),
    ("ppo", "CartPole-v1", {"num_envs": 2, "num_steps": 8, "num_minibatches": 3},
     "not divisible by num_minibatches"),
    ("reinforce", "CartPole-v1", {"baseline": "optimal"},
     "unknown baseline 'optimal'; choose one of ['none', 'moving_average', 'learned']"),
    ("sac", "CartPole-v1", {"actor_estimator": "pathwise"},
     "pathwise supports continuous distributions, not discrete ones; for discrete actions "
     "choose --config.actor_estimator from ['score_function', 'gumbel_softmax', 'straight_through', "
     "'gumbel_rao', 'exact', 'rebar', 'relax', 'unordered_set', 'measure_valued']"),
    ("sac", "Pendulum-v1", {"actor_estimator": "rebar"},
     "rebar supports discrete distributions, not continuous ones; for continuous actions choose "
     "--config.actor_estimator from ['pathwise', 'score_function', 'zeroth_order', "
     "'measure_valued']"),
    ("sac", "Pendulum-v1", {"actor_estimator": "gumbel_rao"},
     "gumbel_rao supports discrete distributions, not continuous ones; for continuous actions "
     "choose --config.actor_estimator from ['pathwise', 'score_function', 'zeroth_order', "
     "'measure_valued']"),
    ("sac", "Pendulum-v1", {"actor_estimator": "unordered_set"},
     "unordered_set supports discrete distributions, not continuous ones; for continuous "
     "actions choose"),
    ("sac", "CartPole-v1", {"actor_estimator": "unordered_set", "unordered_set_samples": 3},
     "unordered_set_samples=3 exceeds the 2 actions"),
    ("sac", "CartPole-v1", {"rebar_temperature": -0.5}, "rebar_temperature must be a finite"),
    ("sac", "Acrobot-v1", {}, "for discrete actions choose --config.actor_estimator from"),
    ("sac", "Pendulum-v1", {"actor_estimator": "nope"}, "unknown actor_estimator 'nope'; choose"),
    ("sac", "Pendulum-v1", {"actor_baseline": "value"}, "control variate for the score"),
    ("sac", "Pendulum-v1", {"max_alpha": float("nan")}, "max_alpha must be > 0 (inf: off)"),
    ("ppo", "NoSuchEnv-v0", {}, "unknown environment 'NoSuchEnv-v0'; choose one of CartPole-v1"),
    ("nope", "CartPole-v1", {}, "unknown agent 'nope'; choose one of ['actor_critic', 'ppo'"),
])
def test_bad_config_is_rejected_before_compiling(tmp_path, monkeypatch, agent, env_id,
                                                 overrides, message):
    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before validating")
    monkeypatch.setattr(runner.SeedTrainer, "compile", no_compile)
    monkeypatch.setattr(runner.SeedTrainer, "init", no_compile)
    with pytest.raises(train.UsageError) as info:
        train.run(agent, env_id, num_seeds=2, seed=0, total_steps=None,
                  output_dir=str(tmp_path), overrides=overrides, quiet=True)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())   # nothing written


def test_infinite_max_grad_norm_means_off_and_is_allowed():
    entry, config = configs.make_config("sac", "Pendulum-v1", {"max_grad_norm": float("inf")},
                                        None, True)
    assert config.max_grad_norm == float("inf")


def test_cli_non_finite_value_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.train", f"--output_dir={tmp_path}",
                           "--config.learning_rate=nan"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: learning_rate must be a finite number > 0, got nan"], proc.stderr


def _poisoned(make_stages, from_step):
    """Stages whose metrics turn NaN from env step ``from_step`` on (a divergence at a known
    log interval)."""
    def make(entry, config, env, env_params):
        stages = make_stages(entry, config, env, env_params)

        def run(carry, start, length, train_config=stages.config):
            carry, metrics = stages.run(carry, start, length, train_config)
            metrics["actor_loss"] = jnp.where(metrics["env_steps"] >= from_step, jnp.nan,
                                              metrics["actor_loss"])
            return carry, metrics
        return stages._replace(run=run)
    return make


def test_divergence_stops_with_step_and_seeds_and_keeps_last_good_checkpoint(tmp_path,
                                                                             monkeypatch):
    # Log interval i ends at env step 16 (i + 1); NaN from the third interval (i = 2) on.
    monkeypatch.setattr(train, "make_stages", _poisoned(train.make_stages, 48))
    with pytest.raises(runner.Diverged) as info:
        train.run("ppo", "CartPole-v1", num_seeds=2, seed=9, total_steps=16 * 4,
                  output_dir=str(tmp_path), overrides=PPO, quiet=True, checkpoint_every=1)
    message = str(info.value)
    assert "\n" not in message
    assert "log interval 2 (env step 48 per seed), seed index [0, 1] of seed 9" in message
    assert "non-finite actor_loss" in message and "at log interval 2" in message
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
    assert steps == [1, 2]          # the state before the bad interval, and nothing after
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.asarray(metrics["actor_loss"]).shape == (2, 2)
    assert np.isfinite(metrics["actor_loss"]).all()
    divergence = json.loads((tmp_path / "divergence.json").read_text())
    assert divergence["seed"] == 9 and divergence["seed_indices"] == [0, 1]
    assert divergence["checkpoint_step"] == 2
    assert not (tmp_path / "summary.json").exists()


def _diverging_command(tmp_path) -> list[str]:
    """A tiny PPO run whose learning rate of 1e38 overflows the parameters in the first updates."""
    return [sys.executable, "-m", "experiments.train", f"--output_dir={tmp_path}",
            "--num_seeds=2", "--total_steps=32", "--quiet", "--config.num_envs=2",
            "--config.num_steps=8", "--config.log_interval=1", "--config.actor_widths=(8,)",
            "--config.critic_widths=(8,)", "--config.num_minibatches=1",
            "--config.num_epochs=1", "--config.learning_rate=1e38", "--config.anneal_lr=false"]


@pytest.mark.slow
def test_cli_diverging_run_exits_3_in_one_line(tmp_path):
    args = _diverging_command(tmp_path)
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: diverged at log interval "), proc.stderr
    assert "seed index [0, 1] of seed 0: non-finite" in lines[0] and "actor_loss" in lines[0]


def test_debug_nans_finds_no_nan_in_a_healthy_run(tmp_path):
    summary = train.run("ppo", "CartPole-v1", num_seeds=1, seed=0, total_steps=32,
                        output_dir=str(tmp_path), overrides=PPO, quiet=True, debug_nans=True)
    assert np.isfinite(summary["final_return_mean"])
    assert not train.jax.config.jax_debug_nans   # restored


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / "result.json"
    with pytest.raises(TypeError):
        _common.write_json(path, {"ok": 1, "bad": object()})
    assert list(tmp_path.iterdir()) == []            # neither the file nor a temporary one
    _common.write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        _common.write_json(path, {"ok": 2, "bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    fig, ax = _common.plt.subplots()
    ax.plot([0, 1])

    def interrupted(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise KeyboardInterrupt
    monkeypatch.setattr(type(fig), "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _common.save_figure(fig, tmp_path / "curve.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_debug_nans_stops_at_the_first_nan(tmp_path):
    args = _diverging_command(tmp_path) + ["--debug_nans"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: diverged at log intervals 0–1") and "nan" in last, proc.stderr
