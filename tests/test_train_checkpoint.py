"""``experiments.train`` checkpoints: a run stopped and resumed ends exactly where a run never
stopped does (parameters, metrics; SAC's replay buffer is part of the saved state), and a resume
refuses another run's checkpoints."""

import json

import jax
import numpy as np
import pytest


from experiments import train
from tests.conftest import TINY



@pytest.fixture(autouse=True)
def _small_eval(monkeypatch):
    monkeypatch.setattr(train, "MIN_EVAL_EPISODES", 1)


def _run(agent, out, **kw):
    env_id, total, overrides = TINY[agent]
    return train.run(agent, env_id, num_seeds=2, seed=3, total_steps=total, output_dir=str(out),
                     overrides=overrides, quiet=True, return_output=True, **kw)


def _assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    jax.tree.map(np.testing.assert_array_equal, a.obs_stats, b.obs_stats)
    assert set(a.metrics) == set(b.metrics)
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)


# SAC (replay buffer included) runs in the slow suite: it compiles two more programs.
@pytest.mark.parametrize("agent", ["ppo", pytest.param("sac", marks=pytest.mark.slow)])
def test_stopped_and_resumed_run_equals_uninterrupted(tmp_path, agent, compile_cache):
    """Stopped after 2 of 4 log intervals, as a preempted job, then resumed: the same final
    parameters, observation statistics and metrics, bit for bit, as the run in one piece (the
    randomness of interval i is split(loop key, num_logs)[i] however the run is cut)."""
    _, whole = _run(agent, tmp_path / "whole")
    assert _run(agent, tmp_path / "cut", checkpoint_every=1, stop_after=2) == (None, None)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()) == ["1", "2"]
    summary, resumed = _run(agent, tmp_path / "cut", checkpoint_every=1, resume=True)
    assert summary["resumed_at_log"] == 2
    _assert_same(whole, resumed)
    on_disk = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    np.testing.assert_array_equal(np.asarray(on_disk["eval_return"], np.float32),
                                  resumed.metrics["eval_return"])
    assert on_disk.keys() == json.loads((tmp_path / "whole" / "metrics.json").read_text()).keys()


def test_resume_refuses_another_runs_checkpoint_and_unasked_overwrite(tmp_path):
    _run("ppo", tmp_path, checkpoint_every=2, stop_after=2)
    env_id, total, overrides = TINY["ppo"]
    with pytest.raises(train.UsageError, match="another run .*seed=3.*now 4"):
        train.run("ppo", env_id, num_seeds=2, seed=4, total_steps=total,
                  output_dir=str(tmp_path), overrides=overrides, quiet=True, checkpoint_every=2,
                  resume=True)
    with pytest.raises(train.UsageError, match="another config .*learning_rate"):
        train.run("ppo", env_id, num_seeds=2, seed=3, total_steps=total,
                  output_dir=str(tmp_path), overrides={**overrides, "learning_rate": 1e-3},
                  quiet=True, checkpoint_every=2, resume=True)
    with pytest.raises(train.UsageError, match="already holds checkpoints; pass --resume"):
        _run("ppo", tmp_path, checkpoint_every=2)
