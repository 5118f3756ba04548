"""``agents.jit``: plain ``jax.jit`` unless the launcher opts in to the CPU vector width with
``AGENTS_CPU_VECTOR_WIDTH``; the opt-in applies on CPU only and reaches XLA."""

import jax
import pytest

import agents
from agents import _jit


def test_default_is_plain_jax_jit(monkeypatch):
    monkeypatch.delenv(_jit.CPU_VECTOR_WIDTH_ENV, raising=False)
    assert agents.compiler_options("cpu") is None
    assert agents.compiler_options("gpu") is None
    assert agents.compiler_options("cpu", xla_backend_optimization_level=1) == {
        "xla_backend_optimization_level": 1}


def test_opt_in_applies_on_cpu_only_and_can_be_overridden(monkeypatch):
    monkeypatch.setenv(_jit.CPU_VECTOR_WIDTH_ENV, "512")
    assert agents.compiler_options("cpu") == {"xla_cpu_prefer_vector_width": 512}
    assert agents.compiler_options("tpu") is None
    assert agents.compiler_options("cpu", xla_cpu_prefer_vector_width=256) == {
        "xla_cpu_prefer_vector_width": 256}
    monkeypatch.setenv(_jit.CPU_VECTOR_WIDTH_ENV, "wide")
    with pytest.raises(ValueError, match=_jit.CPU_VECTOR_WIDTH_ENV):
        agents.compiler_options("cpu")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the opt-in is a CPU option")
def test_opt_in_and_given_options_reach_xla(monkeypatch):
    # XLA refuses an unknown option at compile time: proof that ``jit`` hands its options to
    # XLA; the opt-in travels the same way (``compiler_options``) and compiles.
    monkeypatch.delenv(_jit.CPU_VECTOR_WIDTH_ENV, raising=False)
    f = agents.jit(lambda x: x + 1, compiler_options={"xla_cpu_no_such_option": 1})
    with pytest.raises(Exception, match="xla_cpu_no_such_option"):
        f.lower(1.0).compile()
    monkeypatch.setenv(_jit.CPU_VECTOR_WIDTH_ENV, "512")
    assert float(agents.jit(lambda x: x + 1)(1.0)) == 2.0
