"""The Export tab says the expected size and time, and where each figure comes from, before
an export starts (ExportModel.expected; the sizes are checked in tests/export/test_expected.py)."""

from __future__ import annotations

from gemma_panel.export.manifest import write_manifest
from gemma_panel.models.registry import get_model_spec
from gemma_panel.ui.export_model import ExportModel
from gemma_panel.ui.export_view import ExportView
from tests.ui.test_bindings import _read_only
from tests.ui.test_export_tab import _run


def test_the_expectation_follows_format_and_type_and_names_its_basis(store):
    run = _run(store, "done")  # the default recipe: Gemma 3 270M, from the registry
    m = ExportModel(store)
    view = ExportView(model=m)
    _read_only(m, expected="written by a view")
    assert m.fmt == "gguf" and m.quantize == "f16"
    f16_mb = get_model_spec("gemma3-270m").params * 2 / 1e6  # every matrix at 16 bits
    assert f"≈ {f16_mb:.1f} MB" in m.expected and "16 bits" in m.expected
    assert "docs/export.md's rate" in m.expected and "registry's gemma3-270m" in m.expected
    view.quantize.value = "q8_0"  # as the browser would
    assert "× 8.5 bits" in m.expected
    view.fmt.value = "lora"
    assert "LoRA parameters × 32 bits" in m.expected
    folder = run.run_dir / "exports" / "lora-step000004"
    folder.mkdir(parents=True)
    (folder / "adapter.lora.h5").write_bytes(b"x" * 2_000_000)
    write_manifest(folder, {"format": "lora", "quantize": None,
                            "timings": {"export_and_verify_s": 40.0}})
    m.fmt = "gguf"
    m.fmt = "lora"
    assert "measured: 1 earlier lora export(s) in this store" in m.expected


def test_no_run_no_expectation(store):
    m = ExportModel(store)
    assert m.run is None and m.expected == ""
