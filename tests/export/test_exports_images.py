"""An image run's model exported: the formats that keep its vision tower are written and
verified (the text checks feed it no image), the text-only ones are refused up front."""

from __future__ import annotations

import json

import pytest

from gemma_panel.export.pipeline import ExportError, export_model
from gemma_panel.export.source import load_run_model
from gemma_panel.training import train
from tests.training.test_image_gemma4 import vlm4_folder  # noqa: F401  (a fixture)
from tests.training.test_image_run import image_recipe
from tests.training.tiny_vlm import build_tiny_vlm, write_colour_rows


def _run(root, preset):
    """Two LoRA steps of a tiny vision model on colour pictures, as `gemma-panel run`."""
    (root / "data").mkdir()
    data = write_colour_rows(root / "data", repeat=3)
    recipe = image_recipe(preset, data, "train.max_steps=2", "eval.every_steps=2",
                          "eval.max_new_tokens=4")
    assert train(recipe, root / "run").status == "succeeded"
    return root / "run"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-run")
    build_tiny_vlm().save_to_preset(str(root / "preset"))
    return _run(root, root / "preset")


@pytest.fixture(scope="module")
def gemma4_image_run(tmp_path_factory, vlm4_folder):  # noqa: F811
    return _run(tmp_path_factory.mktemp("image-run-4"), vlm4_folder)


@pytest.mark.parametrize("fmt", ["keras", "hf", "peft"])
def test_an_image_runs_model_exports_and_verifies(image_run, tmp_path, fmt):
    result = export_model(load_run_model(image_run), fmt, tmp_path / fmt)
    checks = {c["name"]: c for c in result.manifest["verification"]["checks"]}
    assert result.manifest["verification"]["passed"]
    assert any(name.endswith(("carries_lora", "changes_base")) and c["passed"]
               for name, c in checks.items())
    if fmt == "hf":  # transformers' multimodal Gemma 3, vision tower included
        config = json.loads((tmp_path / fmt / "config.json").read_text())
        assert config["architectures"] == ["Gemma3ForConditionalGeneration"]
        assert "vision_config" in config


@pytest.mark.parametrize("fmt", ["gguf", "savedmodel", "litert"])
def test_text_only_formats_are_refused_for_a_model_with_a_vision_tower(image_run, tmp_path,
                                                                        fmt):
    with pytest.raises(ExportError, match="vision tower"):
        export_model(load_run_model(image_run), fmt, tmp_path / fmt)
    assert not (tmp_path / fmt).exists()


def test_a_gemma4_image_runs_model_exports_to_hf_and_refuses_gguf(gemma4_image_run, tmp_path):
    """Gemma 4's vision inputs (patches, their positions) fed empty for the text checks."""
    result = export_model(load_run_model(gemma4_image_run), "hf", tmp_path / "hf")
    assert result.manifest["verification"]["passed"]
    assert "vision_config" in json.loads((tmp_path / "hf" / "config.json").read_text())
    with pytest.raises(ExportError, match="vision tower"):
        export_model(load_run_model(gemma4_image_run), "gguf", tmp_path / "gguf")
