"""The side-by-side benchmark's bookkeeping: rounds alternate, ratios and medians are right, and
the peer script's JSON is read as bench_rejax.py writes it (a stand-in script here: rejax lives
in its own venv, which CI does not have)."""

import sys

import pytest

from experiments import benchmark_peers


def test_side_by_side_alternates_and_takes_medians():
    calls = []
    ours_speed = {"ppo": iter([200.0, 260.0, 240.0, 300.0, 100.0]),
                  "sac": iter([2000.0, 2100.0, 2200.0, 2000.0, 2000.0])}
    peer_speed = {"ppo": iter([250.0, 200.0, 240.0, 200.0, 200.0]),
                  "sac": iter([1000.0, 1500.0, 2000.0, 1000.0, 2000.0])}

    def ours(agent):
        calls.append(("ours", agent))
        return {"env_steps_per_second": next(ours_speed[agent]), "compile_s": 5.0, "run_s": [1.0]}

    def peer(agent):
        calls.append(("rejax", agent))
        return {"env_steps_per_second": next(peer_speed[agent]), "compile_s": 4.0, "run_s": [1.0]}

    result = benchmark_peers.side_by_side(5, ours_fn=ours, peer_fn=peer)
    # Ours first in even rounds, rejax first in odd ones.
    assert calls[:8] == [("ours", "ppo"), ("rejax", "ppo"), ("ours", "sac"), ("rejax", "sac"),
                         ("rejax", "ppo"), ("ours", "ppo"), ("rejax", "sac"), ("ours", "sac")]
    assert len(calls) == 2 * 2 * 5
    ppo = result["medians"]["ppo"]
    assert ppo["speed_ratio"] == pytest.approx(1.0)          # ratios 0.8, 1.3, 1.0, 1.5, 0.5
    assert ppo["speed_ratio_range"] == pytest.approx([0.5, 1.5])
    sac = result["medians"]["sac"]
    assert sac["speed_ratio"] == pytest.approx(1.4)          # 2.0, 1.4, 1.1, 2.0, 1.0
    assert sac["speed_ratio_range"] == pytest.approx([1.0, 2.0])
    assert sac["rejax_compile_s"] == 4.0
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


def test_peer_same_options_rows_and_xla_flags(tmp_path):
    assert benchmark_peers.xla_flags({"xla_cpu_prefer_vector_width": 512, "xla_cpu_ftz": True}) \
        == "--xla_cpu_prefer_vector_width=512 --xla_cpu_ftz=true"
    # The stand-in peer is faster under the options it is given through XLA_FLAGS.
    script = tmp_path / "bench_rejax.py"
    script.write_text(
        "import json, os, sys\n"
        "tag = sys.argv[sys.argv.index('--tag') + 1]\n"
        "fast = '--xla_cpu_prefer_vector_width=512' in os.environ.get('XLA_FLAGS', '')\n"
        "runs = [{'run_s': 1.0, 'env_steps_per_s': 150.0 if fast else 100.0}]\n"
        "json.dump({'trace_lower_s': 0.5, 'compile_s': 3.0, 'runs': runs},\n"
        "          open(os.path.join(os.environ['PEERS_OUT'], tag + '.json'), 'w'))\n")
    options = {"xla_cpu_prefer_vector_width": 512}
    def plain(a):
        return benchmark_peers.run_peer(a, sys.executable, str(tmp_path))

    def same(a):
        return benchmark_peers.run_peer(a, sys.executable, str(tmp_path), options)
    assert plain("sac")["env_steps_per_second"] == 100.0
    assert same("sac")["env_steps_per_second"] == 150.0

    def ours(a):
        return {"env_steps_per_second": 300.0, "compile_s": 5.0, "run_s": [1.0]}
    result = benchmark_peers.side_by_side(2, agents=("sac",), ours_fn=ours, peer_fn=plain,
                                          peer_same_fn=same)
    sac = result["medians"]["sac"]
    assert sac["speed_ratio"] == pytest.approx(3.0)
    assert sac["same_options_ratio"] == pytest.approx(2.0)
    assert sac["rejax_same_options_steps_per_s"] == 150.0
    assert sac["same_options_ratio_range"] == pytest.approx([2.0, 2.0])
    assert all("same_options_ratio" in row for row in result["rows"])
