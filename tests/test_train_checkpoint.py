"""``experiments.train`` checkpoints (``agents.runner.Checkpoints``): a run stopped and resumed
ends exactly where a run never stopped does (parameters, metrics; SAC's replay buffer is part of
the saved state); a damaged latest checkpoint is named and skipped for the one before it; a
resume refuses another run's checkpoints, writing nothing; a finished run resumed keeps its
throughput."""

import json
import pathlib

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
    randomness of interval i is split(loop key, num_logs)[i] however the run is cut). Resumed
    once more when finished, it trains nothing and keeps the throughput it measured."""
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
    assert summary["env_steps_per_second"] > 0

    again, _ = _run(agent, tmp_path / "cut", checkpoint_every=1, resume=True)
    assert again["resumed_at_log"] == 4
    for key in ("env_steps_per_second", "train_seconds", "compile_seconds"):
        assert again[key] == summary[key], key


def _truncate(path: pathlib.Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def test_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys,
                                                                compile_cache):
    """The data file of the latest of checkpoints 1, 2, 3 truncated: the resume names that file,
    moves the step aside (deleting nothing), continues from step 2 and ends exactly where the
    run never stopped does."""
    _, whole = _run("ppo", tmp_path / "whole")
    cut = tmp_path / "cut"
    _run("ppo", cut, checkpoint_every=1, stop_after=3)
    data_files = sorted((cut / "checkpoints" / "3" / "state" / "d").iterdir())
    assert data_files
    for path in data_files:
        _truncate(path)
    capsys.readouterr()
    summary, resumed = _run("ppo", cut, checkpoint_every=1, resume=True)
    err = capsys.readouterr().err
    assert f"warning: checkpoint 3 is damaged ({data_files[0]}" in err, err
    assert summary["resumed_at_log"] == 2
    _assert_same(whole, resumed)
    names = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert names == ["2", "3", "3.damaged", "4"], names   # 1 rotated out by orbax (keeps 3)
    assert sorted(p.name for p in (cut / "checkpoints" / "3.damaged" / "state" / "d").iterdir()
                  ) == [p.name for p in data_files]


def test_resume_refuses_another_runs_checkpoint_and_unasked_overwrite(tmp_path):
    _run("ppo", tmp_path, checkpoint_every=2, stop_after=2)
    info = (tmp_path / "run_info.json").read_text()
    env_id, total, overrides = TINY["ppo"]
    with pytest.raises(train.UsageError, match="another run .*seed=3.*now 4"):
        train.run("ppo", env_id, num_seeds=2, seed=4, total_steps=total,
                  output_dir=str(tmp_path), overrides=overrides, quiet=True, checkpoint_every=2,
                  resume=True)
    with pytest.raises(train.UsageError, match="another config .*learning_rate"):
        train.run("ppo", env_id, num_seeds=2, seed=3, total_steps=total,
                  output_dir=str(tmp_path), overrides={**overrides, "learning_rate": 1e-3},
                  quiet=True, checkpoint_every=2, resume=True)
    with pytest.raises(train.UsageError, match="already holds files; pass --resume"):
        _run("ppo", tmp_path, checkpoint_every=2)
    # A refused run leaves the folder's run as it was.
    assert (tmp_path / "run_info.json").read_text() == info
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "run_info.json"]
