"""LiteRT exports of the tiny LoRA-tuned Gemma 3, run in the LiteRT interpreter (seconds).

The exporter verifies itself; these tests check that its checks ran with the stated bounds,
that the file really is what the manifest says (run again here in a fresh interpreter), and
that an export whose LoRA was dropped, or a request LiteRT cannot serve, fails.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from gemma_panel.export import ExportError, VerificationError, export_model, is_finished
from gemma_panel.export.litert import (
    INT8_MIN_TOP1,
    LiteRTModel,
    unconvertible,
)
from gemma_panel.export.verify import keras_logits, probe_ids


def checks(result) -> dict:
    return {c["name"]: c for c in result.manifest["verification"]["checks"]}


@pytest.fixture(scope="module")
def litert_int8(tiny_source, tmp_path_factory):
    return export_model(tiny_source, "litert", tmp_path_factory.mktemp("litert") / "int8")


def test_f32_file_gives_keras_logits_in_the_litert_interpreter(tiny_source, tmp_path):
    result = export_model(tiny_source, "litert", tmp_path / "f32", quantize="f32")
    found = checks(result)
    for name in ("litert_signature", "litert_logits", "litert_carries_lora"):
        assert found[name]["passed"], found[name]
    assert found["litert_logits"]["max_abs_diff"] <= found["litert_logits"]["tolerance"] <= 1e-3
    length = tiny_source.recipe.data.sequence_length
    assert result.manifest["signature"]["token_ids"] == [1, length]
    # Independently of the exporter: a fresh interpreter on the file, a prompt shorter than
    # the signature (right-padded), against the tuned model's Keras logits.
    model = LiteRTModel(result.path / "model.tflite")
    ids = probe_ids(tiny_source.lm)[:, :10]
    diff = np.abs(model.logits(ids) - keras_logits(tiny_source.lm, ids)).max()
    assert diff <= 1e-3
    assert (result.path / "tokenizer.model").is_file()


def test_int8_file_is_smaller_checked_and_reports_perplexity(litert_int8, tiny_source):
    found = checks(litert_int8)
    assert is_finished(litert_int8.path)
    assert litert_int8.manifest["quantize"] == "int8"
    assert litert_int8.path.name == "int8"
    assert found["litert_int8_logits"]["passed"]
    assert found["litert_int8_logits"]["top1_agreement"] >= INT8_MIN_TOP1
    assert found["litert_carries_lora"]["passed"], found["litert_carries_lora"]
    types = found["litert_tensor_types"]
    assert types["by_op"]["INT8"]["FULLY_CONNECTED"] > 0  # every matmul and the output head
    # The embedding lookup stays float32 (docs/export.md, "int8 where it holds").
    embedding = tiny_source.lm.backbone.token_embedding.embeddings
    assert types["by_op"]["FLOAT32"]["GATHER_ND"] == int(np.prod(embedding.shape)) * 4
    ppl = found["validation_perplexity"]
    assert ppl["tuned"] > 1 and ppl["exported"] > 1, ppl
    size = found["file_size"]["bytes"]
    float_bytes = sum(int(np.prod(w.shape)) * 4 for w in tiny_source.lm.backbone.weights
                      if "lora" not in w.path)
    assert size < 0.6 * float_bytes  # int8 kernels and embedding, float norms
    manifest = json.loads((litert_int8.path / "manifest.json").read_text())
    assert "model.tflite" in {f["path"] for f in manifest["files"]}
    assert "ai_edge_litert" in (litert_int8.path / "README.md").read_text()


def test_an_export_that_drops_the_lora_fails(tiny_source, tmp_path, monkeypatch):
    """Break the merge (it hands back the base kernels): the file no longer carries the
    LoRA, and nothing is kept."""
    from gemma_panel.export import source as source_module
    from gemma_panel.models.lora import lora_switched_off

    merge = source_module.merged_copy

    def base_merge(lm):
        with lora_switched_off(lm):
            return merge(lm)

    monkeypatch.setattr(tiny_source, "_merged", None)
    monkeypatch.setattr(source_module, "merged_copy", base_merge)
    with pytest.raises(VerificationError, match="litert_carries_lora"):
        export_model(tiny_source, "litert", tmp_path / "dropped", quantize="f32")
    assert not (tmp_path / "dropped").exists()


@pytest.mark.parametrize("quantize, merge, message", [
    ("int4", True, "LiteRT type 'int4' is not supported"),
    ("f32", False, "need the LoRA merged"),
])
def test_requests_litert_cannot_serve_are_refused_up_front(tiny_source, tmp_path, quantize,
                                                           merge, message):
    with pytest.raises(ExportError, match=message):
        export_model(tiny_source, "litert", tmp_path / "x", quantize=quantize, merge=merge)
    assert not (tmp_path / "x").exists()


def test_an_op_the_converter_cannot_lower_is_named():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([2], tf.string)])
    def upper(text):
        return tf.strings.upper(text)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [upper.get_concrete_function()], upper)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with pytest.raises(Exception) as failed:
        converter.convert()
    message = unconvertible(failed.value)
    assert "tf.StringUpper" in message and message.endswith("instead.")


def test_cli_exports_a_run_to_litert(tiny_run, capsys):
    from gemma_panel.cli import main

    run_id, run_dir, _ = tiny_run
    assert main(["export", run_id, "--format", "litert", "--quantize", "f32"]) == 0
    out = capsys.readouterr().out
    assert "litert f32 export" in out and "model.tflite" in out and "litert_logits" in out
    assert (run_dir / "exports" / "litert-f32-step000004" / "model.tflite").is_file()


def test_the_export_tab_and_the_cli_offer_litert(tmp_path):
    from gemma_panel.cli import build_parser
    from gemma_panel.export.pipeline import default_folder_name
    from gemma_panel.runs import RunStore
    from gemma_panel.ui.export_model import ExportModel

    m = ExportModel(RunStore(tmp_path))
    m.fmt = "litert"
    assert m.param.quantize.objects == ["int8", "f32"] and m.quantize == "int8"
    args = build_parser().parse_args(["export", "run", "--format", "litert", "-q", "f32"])
    assert (args.format, args.quantize) == ("litert", "f32")
    assert default_folder_name("litert", "int8", 4) == "litert-int8-step000004"


def test_gemma4_converts_with_position_ids_in_the_signature(tmp_path):
    from gemma_panel.models import load_model
    from tests.models.tiny_hf_gemma4 import write_tiny_gemma4

    write_tiny_gemma4(tmp_path / "hf", "dense")
    lm = load_model(str(tmp_path / "hf"), progress=False)
    result = export_model(lm, "litert", tmp_path / "g4", quantize="f32")
    found = checks(result)
    assert found["litert_logits"]["passed"], found["litert_logits"]
    assert set(result.manifest["signature"]) == {"token_ids", "padding_mask", "position_ids",
                                                 "output_0"}
