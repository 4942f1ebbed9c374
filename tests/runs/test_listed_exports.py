"""A recipe's ``export:`` section: refused before queueing when no export could make it."""

from __future__ import annotations

import pytest

from gemma_panel.cli import main
from gemma_panel.config import load_recipe
from gemma_panel.export.listed import ListedExport, check_listed, quantize_for, summary
from gemma_panel.export.manifest import ExportError
from tests.runs.conftest import fake_recipe


@pytest.mark.parametrize("overrides, words", [
    (["export.formats=[onnx]"], "Unknown export format 'onnx'"),
    (["export.formats=[hf]", "export.quantize=q8_0"], "applies to none of the listed"),
    (["export.formats=[gguf]", "export.quantize=q3_x"], "GGUF type 'q3_x' is not supported"),
    (["export.formats=[savedmodel]", "export.merge=false"], "savedmodel"),
])
def test_an_export_section_no_export_can_make_is_refused_before_queueing(
        store, capsys, overrides, words):
    recipe = fake_recipe(*overrides)
    with pytest.raises(ExportError, match=words):
        check_listed(recipe)
    from gemma_panel.config import recipe_to_yaml

    path = store.root / "r.yaml"
    path.write_text(recipe_to_yaml(recipe))
    assert main(["run", str(path), "--detach"]) == 2
    assert words in capsys.readouterr().err and store.list_runs() == []


def test_one_quantize_goes_to_the_formats_that_take_it():
    recipe = load_recipe(None, ["export.formats=[hf, gguf, keras]", "export.quantize=q8_0"])
    check_listed(recipe)
    got = {f: quantize_for(f, recipe.export.quantize) for f in recipe.export.formats}
    assert got == {"hf": None, "gguf": "q8_0", "keras": None}
    assert quantize_for("keras", "int8") == "int8" and quantize_for("gguf", "int8") is None
    assert quantize_for("litert", "int8") == "int8" and quantize_for("litert", "q8_0") is None


def test_the_summary_names_each_failure_and_the_command_to_retry():
    ok, bad = ListedExport("lora", "/x/lora", None), ListedExport("hf", None, "LoRA lost")
    assert summary([ok]) == "exported and verified: lora"
    said = summary([ok, bad])
    assert "1 listed export(s) failed (hf: LoRA lost)" in said
    assert "gemma-panel export RUN --format hf" in said and "(verified: lora)" in said
    assert summary([]) is None
