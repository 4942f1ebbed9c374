"""The Export tab's expected size (export/expected.py) against real exports: a tiny
LoRA-tuned Gemma 3 exported here, and Gemma 3 270M's sizes as docs/export.md measured them."""

from __future__ import annotations

import math

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.export import export_run
from gemma_panel.export.expected import STATED, count_params, expect_export
from tests.export.conftest import tiny_overrides

FACTOR = 1.5  # the stated bound: real size / expected size within [1/1.5, 1.5]


@pytest.mark.parametrize("fmt,quantize", [("gguf", "q8_0"), ("keras", None), ("lora", None)])
def test_the_expected_size_is_within_the_factor_of_a_real_tiny_export(
        tiny_run, tiny_gguf, tmp_path, fmt, quantize):
    _, run_dir, _ = tiny_run
    recipe = load_recipe(run_dir / "recipe.yaml")
    expected = expect_export(recipe, fmt, quantize)
    real = export_run(run_dir, fmt, quantize=quantize, out=tmp_path / fmt).manifest
    ratio = real["total_bytes"] / expected.bytes
    print(f"{fmt} {quantize}: real {real['total_bytes']} B, expected {expected.bytes} B, "
          f"ratio {ratio:.2f}")
    assert 1 / FACTOR <= ratio <= FACTOR, expected.text()
    assert "GGUF file's tensor shapes" in expected.size_basis


def test_the_tiny_count_is_the_gguf_s_and_lora_follows_the_recipe(tiny_gguf, tiny_source):
    recipe = load_recipe(None, tiny_overrides(tiny_gguf))
    params = count_params(recipe)
    lora = sum(math.prod(w.shape) for w in tiny_source.lm.trainable_weights)  # LoRA's only
    assert params.lora == lora
    assert params.total + params.lora == tiny_source.lm.backbone.count_params()


@pytest.mark.parametrize("fmt,quantize,measured_mb", [
    ("gguf", "f32", 1079), ("gguf", "q8_0", 292), ("gguf", "q4_0", 241),
    ("savedmodel", None, 1079), ("keras", "int8", 276),
    ("litert", "f32", 1074), ("litert", "int8", 945)])
def test_gemma3_270m_expectations_match_docs_measurements(fmt, quantize, measured_mb, tmp_path):
    recipe = load_recipe(None, ["model.source=gemma3-270m"])
    expected = expect_export(recipe, fmt, quantize, runs_root=tmp_path)  # no earlier export
    assert 1 / 1.25 <= measured_mb * 1e6 / expected.bytes <= 1.25, expected.text()
    assert STATED in expected.time_basis and "registry" in expected.size_basis


def test_a_model_that_cannot_be_counted_says_so(tmp_path):
    (tmp_path / "preset").mkdir()
    recipe = load_recipe(None, [f"model.source={tmp_path / 'preset'}"])
    expected = expect_export(recipe, "gguf", "q8_0")
    assert expected.bytes is None and "neither in the registry nor a GGUF" in expected.text()
