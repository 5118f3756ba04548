"""The side-by-side benchmark's bookkeeping: rounds alternate, ratios and medians are right, and
the peer script's JSON is read as bench_rejax.py writes it (a stand-in script here: rejax lives
in its own venv, which CI does not have)."""

import sys

import pytest

from experiments import benchmark_peers


def test_side_by_side_alternates_and_takes_medians():
    calls = []
    ours_speed = {"ppo": iter([200.0, 260.0, 240.0]), "sac": iter([2000.0, 2100.0, 2200.0])}
    peer_speed = {"ppo": iter([250.0, 200.0, 240.0]), "sac": iter([1000.0, 1500.0, 2000.0])}

    def ours(agent):
        calls.append(("ours", agent))
        return {"env_steps_per_second": next(ours_speed[agent]), "compile_s": 5.0, "run_s": [1.0]}

    def peer(agent):
        calls.append(("rejax", agent))
        return {"env_steps_per_second": next(peer_speed[agent]), "compile_s": 4.0, "run_s": [1.0]}

    result = benchmark_peers.side_by_side(3, ours_fn=ours, peer_fn=peer)
    assert calls[:4] == [("ours", "ppo"), ("rejax", "ppo"), ("ours", "sac"), ("rejax", "sac")]
    ppo = result["medians"]["ppo"]
    assert ppo["speed_ratio"] == pytest.approx(1.0)          # ratios 0.8, 1.3, 1.0
    assert ppo["speed_ratio_range"] == pytest.approx([0.8, 1.3])
    assert result["medians"]["sac"]["speed_ratio"] == pytest.approx(1.4)   # 2.0, 1.4, 1.1
    assert result["medians"]["sac"]["rejax_compile_s"] == 4.0
    with pytest.raises(ValueError, match="rounds"):
        benchmark_peers.side_by_side(0, ours_fn=ours, peer_fn=peer)


def test_run_peer_reads_the_peer_json(tmp_path):
    script = tmp_path / "bench_rejax.py"
    script.write_text(
        "import json, os, sys\n"
        "tag = sys.argv[sys.argv.index('--tag') + 1]\n"
        "runs = [{'run_s': 2.0, 'env_steps_per_s': 100.0}, {'run_s': 1.0, 'env_steps_per_s': 200.0}]\n"
        "json.dump({'trace_lower_s': 0.5, 'compile_s': 3.0, 'runs': runs},\n"
        "          open(os.path.join(os.environ['PEERS_OUT'], tag + '.json'), 'w'))\n")
    got = benchmark_peers.run_peer("ppo", sys.executable, str(tmp_path))
    assert got == {"env_steps_per_second": 200.0, "compile_s": 3.5, "run_s": [2.0, 1.0]}
    with pytest.raises(benchmark_peers.PeerError, match="peer python not found"):
        benchmark_peers.run_peer("ppo", str(tmp_path / "nope"), str(tmp_path))
    script.write_text("import sys; sys.exit(3)\n")
    with pytest.raises(benchmark_peers.PeerError, match="exit 3"):
        benchmark_peers.run_peer("sac", sys.executable, str(tmp_path))
