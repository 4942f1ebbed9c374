"""The devices report: what JAX sees here, and when bfloat16 is faster than float32."""

from __future__ import annotations

from types import SimpleNamespace

import jax

from gemma_panel.distribution.devices import (
    bf16_speed,
    cpu_bf16_flags,
    describe_devices,
    device_memory,
)

AMX_CPUINFO = """processor\t: 0
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile
"""
AVX2_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_the_report_describes_the_devices_jax_sees():
    report = describe_devices()
    first = jax.devices()[0]
    assert (report.backend, report.device_kind) == (first.platform, first.device_kind)
    assert report.count == jax.device_count() and report.local_count == jax.local_device_count()
    assert report.hosts == jax.process_count() == 1
    line = report.summary()
    assert line.startswith(f"devices: {report.count} x {first.device_kind}")
    assert "\n" not in line and "bfloat16" in line
    assert any(row.startswith("memory per device:") for row in report.lines())
    assert set(report.to_dict()) >= {"backend", "count", "memory_per_device", "bf16_fast"}


def test_memory_comes_from_memory_stats_where_the_device_reports_it():
    gpu = SimpleNamespace(memory_stats=lambda: {"bytes_limit": 80 * 2**30, "bytes_in_use": 1})
    assert device_memory(gpu) == 80 * 2**30
    assert device_memory(SimpleNamespace(memory_stats=lambda: None)) is None
    assert device_memory(jax.devices("cpu")[0]) is None  # XLA's CPU client says nothing


def test_cpu_bfloat16_is_slow_with_or_without_the_instructions_and_says_why(monkeypatch):
    """Measured on an AMX Xeon with jaxlib 0.10: Keras's bfloat16 layers run no faster, and
    XLA's oneDNN flag changes nothing (docs/benchmarks.md)."""
    assert cpu_bf16_flags(AMX_CPUINFO) == {"amx_bf16", "avx512_bf16"}
    assert cpu_bf16_flags(AVX2_CPUINFO) == set()
    fast, why = bf16_speed("cpu", None, AVX2_CPUINFO)
    assert not fast and "no AMX-BF16" in why
    for flags in ("", "--xla_cpu_use_onednn=true"):
        monkeypatch.setenv("XLA_FLAGS", flags)
        fast, why = bf16_speed("cpu", None, AMX_CPUINFO)
        assert not fast and "amx_bf16/avx512_bf16" in why and "float32" in why


def test_gpu_bfloat16_from_compute_capability_and_tpu_always():
    assert bf16_speed("gpu", SimpleNamespace(compute_capability="9.0"))[0]
    assert bf16_speed("gpu", SimpleNamespace(compute_capability="8.0"))[0]
    assert not bf16_speed("gpu", SimpleNamespace(compute_capability="7.5"))[0]
    assert not bf16_speed("gpu", SimpleNamespace())[0]
    assert bf16_speed("tpu", SimpleNamespace())[0]


def test_the_accelerator_extras_name_jax_builds_that_exist():
    """``gemma-panel[cuda]`` and ``[tpu]`` install JAX extras the installed JAX declares."""
    import tomllib
    from importlib.metadata import metadata
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    declared = set(metadata("jax").get_all("Provides-Extra"))
    for ours, theirs in (("cuda", "cuda12"), ("tpu", "tpu")):
        (requirement,) = [Requirement(r) for r in extras[ours]]
        assert requirement.name == "jax" and requirement.extras == {theirs}
        assert theirs in declared
