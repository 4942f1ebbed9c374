"""Every format on a tiny LoRA-tuned Gemma 3: written, loaded back by its consumer, described.

The exporters verify themselves; these tests check that the checks ran, that their numbers
are what the issue asks (logits within 1e-4 / 1e-3, identical greedy tokens, the LoRA carried),
and that failures leave nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import pytest

from gemma_panel.export import (
    ExportError,
    VerificationError,
    check_files,
    export_model,
    export_run,
    is_finished,
    read_manifest,
)
from gemma_panel.export.verify import LORA_MARGIN_K, keras_logits, perplexity


def checks(result) -> dict:
    return {c["name"]: c for c in result.manifest["verification"]["checks"]}


def assert_finished(result, *names):
    assert is_finished(result.path)
    assert check_files(result.path) == []
    assert (result.path / "README.md").is_file()
    found = checks(result)
    for name in names:
        assert found[name]["passed"], found[name]
    assert not [p for p in result.path.parent.iterdir() if p.name.startswith(".partial-")]


def test_source_is_the_tuned_model_from_the_checkpoint(tiny_run, tiny_source):
    from gemma_panel.export.verify import keras_logits, probe_ids

    _, _, trained = tiny_run
    ids = probe_ids(trained)
    np.testing.assert_allclose(keras_logits(tiny_source.lm, ids), keras_logits(trained, ids),
                               atol=1e-5)
    assert tiny_source.step == 4 and tiny_source.has_lora
    assert tiny_source.describe()["lora"]["target_layers"] == sorted(
        ["attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear", "key", "query", "value"])


def test_merged_copy_equals_the_lora_model_and_has_no_lora(tiny_source):
    from gemma_panel.export.verify import keras_logits, probe_ids
    from gemma_panel.models.lora import lora_layers

    merged = tiny_source.merged()
    ids = probe_ids(tiny_source.lm)
    assert not lora_layers(merged) and lora_layers(tiny_source.lm)
    np.testing.assert_allclose(keras_logits(merged, ids), keras_logits(tiny_source.lm, ids),
                               atol=1e-4)


@pytest.mark.parametrize("merge", [True, False])
def test_keras_file(tiny_source, tmp_path, merge):
    result = export_model(tiny_source, "keras", tmp_path / "keras", merge=merge)
    assert_finished(result, "keras_load_model_logits", "keras_carries_lora")
    assert checks(result)["keras_load_model_logits"]["max_abs_diff"] < 1e-4
    assert result.manifest["merged"] is merge


def test_preset_loads_through_the_model_loader(tiny_source, tmp_path):
    result = export_model(tiny_source, "preset", tmp_path / "preset")
    assert_finished(result, "preset_recognised", "from_preset_logits", "preset_carries_lora")
    assert (result.path / "metadata.json").is_file()


def test_lora_weights_alone_on_a_fresh_base(tiny_source, tmp_path):
    result = export_model(tiny_source, "lora", tmp_path / "lora")
    assert_finished(result, "base_plus_lora_logits")
    config = json.loads((result.path / "lora.json").read_text())
    assert config["alpha"] == tiny_source.recipe.lora.alpha
    assert config["rank"] == tiny_source.recipe.lora.rank
    assert (result.path / "adapter.lora.h5").stat().st_size > 0


def test_savedmodel_serves_the_same_logits(tiny_source, tmp_path):
    result = export_model(tiny_source, "savedmodel", tmp_path / "sm")
    assert_finished(result, "tf_saved_model_serve_logits", "serving_default_signature",
                    "serving_default_logits", "savedmodel_carries_lora")
    assert checks(result)["tf_saved_model_serve_logits"]["max_abs_diff"] <= 1e-4
    assert (result.path / "saved_model" / "saved_model.pb").is_file()


def test_hugging_face_folder_in_transformers(tiny_source, tmp_path, monkeypatch):
    from gemma_panel.export import hf

    # The tiny tokenizer has a user-defined piece of two real spaces beside a normal "▁▁"
    # (tests/models/tiny_gguf.py), which SentencePiece never matches and transformers does;
    # Gemma's own tokenizer agrees on the full probe (test_exports_270m.py).
    monkeypatch.setattr(hf, "TOKENIZER_PROBE", hf.TOKENIZER_PROBE.replace("  ", " "))
    result = export_model(tiny_source, "hf", tmp_path / "hf")
    assert_finished(result, "transformers_logits", "transformers_carries_lora",
                    "greedy_generation", "autotokenizer_probe",
                    "autotokenizer_whitespace_and_turns", "chat_template")
    assert checks(result)["transformers_logits"]["max_abs_diff"] <= 1e-3
    assert {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"} <= {
        p.name for p in result.path.iterdir()}


def test_peft_adapter_on_the_base_in_transformers(tiny_source, tmp_path):
    pytest.importorskip("peft")
    result = export_model(tiny_source, "peft", tmp_path / "peft")
    assert_finished(result, "peft_logits", "peft_changes_base")
    config = json.loads((result.path / "adapter_config.json").read_text())
    rank = tiny_source.recipe.lora.rank
    assert config["r"] == rank and config["rank_pattern"] == {"q_proj": 2 * rank}
    assert not (result.path / ".base-hf").exists()


@pytest.mark.parametrize("file_type", ["f32", "f16", "bf16", "q8_0", "q4_0", "q5_0"])
def test_gguf_types(tiny_source, tmp_path, file_type):
    import gguf

    result = export_model(tiny_source, "gguf", tmp_path / file_type, quantize=file_type)
    assert_finished(result, "gguf_metadata_keys", "gguf_tensor_names",
                    "gguf_dequantized_within_bound", "transformers_gguf_logits",
                    "gguf_carries_lora", "modelfile")
    reader = gguf.GGUFReader(result.path / "model.gguf")
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32"  # norms stay F32
    assert types["blk.1.ffn_down.weight"] == file_type.upper()
    norm = next(t for t in reader.tensors if t.name == "output_norm.weight")
    keras_norm = np.asarray(tiny_source.lm.backbone.get_layer("final_normalization").weights[0])
    np.testing.assert_allclose(np.asarray(norm.data), keras_norm + 1.0, atol=1e-6)  # the +1
    if file_type == "f32":
        assert checks(result)["transformers_gguf_logits"]["max_abs_diff"] <= 1e-3
    else:
        assert "validation_perplexity" in checks(result)


def test_keras_int8(tiny_source, tmp_path):
    import keras

    result = export_model(tiny_source, "keras", tmp_path / "int8", quantize="int8")
    assert_finished(result, "keras_quantized_layers", "keras_int8_logits")
    # its row of test_the_lora_is_measurably_in_every_export, on this export (each int8
    # export takes about two minutes of the suite)
    carried = checks(result)["keras_int8_carries_lora"]
    assert carried["passed"] and carried["d_base"] > carried["d_tuned"]
    assert carried["margin"] > carried["bound"] == LORA_MARGIN_K * carried["noise"] > 0
    size = checks(result)["file_size"]
    assert size["bytes"] > 0 and "float_bytes" in size
    noted = checks(result)["validation_perplexity"]  # the figures are the two models'
    reloaded = keras.saving.load_model(next((tmp_path / "int8").glob("*.keras")))
    for lm, key in ((tiny_source.lm, "tuned"), (reloaded, "exported")):
        measured = perplexity(lambda x, m, lm=lm: keras_logits(lm, x, m), tiny_source.validation)
        assert noted[key] == pytest.approx(measured, rel=1e-4)
    assert noted["exported"] != noted["tuned"]  # int8 moved it


def test_k_quants_without_llama_quantize_leave_nothing(tiny_source, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ExportError, match="llama-quantize"):
        export_model(tiny_source, "gguf", tmp_path / "out" / "q4km", quantize="q4_k_m")
    assert not any((tmp_path / "out").glob("*"))


@pytest.mark.skipif(shutil.which("llama-quantize") is None,
                    reason="llama.cpp's llama-quantize is not on PATH: K-quant GGUF exports "
                           "(q4_k_m ...) are untested here")
@pytest.mark.parametrize("file_type", ["q4_k_m", "q6_k"])
def test_k_quants_through_the_real_llama_quantize(tiny_source, tmp_path, file_type):
    import gguf

    result = export_model(tiny_source, "gguf", tmp_path / file_type, quantize=file_type)
    assert_finished(result, "gguf_metadata_keys", "gguf_tensor_names",
                    "gguf_dequantized_within_bound", "transformers_gguf_logits",
                    "gguf_carries_lora", "modelfile")
    # The tiny model's rows (64, 128) are shorter than a K-block (256): llama-quantize falls
    # back to other types per tensor, but the file says what it was asked to be.
    reader = gguf.GGUFReader(result.path / "model.gguf")
    assert reader.fields["general.file_type"].contents() == int(
        gguf.LlamaFileType[f"MOSTLY_{file_type.upper()}"])


# The tool's failure path only: the script stands in for a llama-quantize that exits non-zero.
def test_a_failing_llama_quantize_is_reported_and_leaves_nothing(tiny_source, tmp_path,
                                                                 monkeypatch):
    tool = tmp_path / "bin" / "llama-quantize"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho \"invalid tensor type $3\" >&2\nexit 3\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ExportError, match="exit 3.*invalid tensor type Q4_K_M"):
        export_model(tiny_source, "gguf", tmp_path / "out" / "q4km", quantize="q4_k_m")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failed_verification_keeps_nothing(tiny_source, tmp_path, monkeypatch):
    from gemma_panel.export import hf

    monkeypatch.setattr(hf, "HF_TOLERANCE", -1.0)  # no logits can pass
    with pytest.raises(VerificationError, match="transformers_logits"):
        export_model(tiny_source, "hf", tmp_path / "out" / "hf")
    assert list((tmp_path / "out").iterdir()) == []


def test_export_run_by_id_names_the_folder_after_format_and_step(tiny_run):
    run_id, run_dir, _ = tiny_run
    result = export_run(run_id[:12], "lora")
    assert result.path == run_dir / "exports" / "lora-step000004"
    manifest = read_manifest(result.path)
    assert manifest["source"]["run_id"] == run_id and manifest["source"]["step"] == 4
    with pytest.raises(ExportError, match="already exists"):
        export_run(run_id, "lora")
    with pytest.raises(ExportError, match="no checkpoint at step 3"):
        export_run(run_id, "lora", step=3)


# Every format with the check that says the LoRA is in it: (format, quantize, merge, check).
KERAS_INT8 = ("keras", "int8", True, "keras_int8_carries_lora")  # measured in test_keras_int8
CARRIED = [
    ("keras", None, True, "keras_carries_lora"),
    ("keras", None, False, "keras_carries_lora"),
    KERAS_INT8,
    ("preset", None, True, "preset_carries_lora"),
    ("lora", None, True, "lora_carries_lora"),
    ("savedmodel", None, True, "savedmodel_carries_lora"),
    ("hf", None, True, "transformers_carries_lora"),
    ("peft", None, True, "peft_changes_base"),
] + [("gguf", t, True, "gguf_carries_lora")
     for t in ("f32", "f16", "bf16", "q8_0", "q4_0", "q5_0")]
CARRIED_IDS = [f"{f}-{q or ('merged' if m else 'unmerged')}" for f, q, m, _ in CARRIED]


@pytest.fixture()
def drop_lora(tiny_source, monkeypatch):
    """A broken exporter: whatever it writes holds the base model, the LoRA dropped.

    The merge hands back the base kernels (every format written merged), ``.keras`` saves
    and the KerasHub adapter hold zero B factors, and the PEFT adapter's ``lora_B`` is 0.
    """
    from gemma_panel.export import keras as keras_export
    from gemma_panel.export import peft as peft_export
    from gemma_panel.export import source as source_module
    from gemma_panel.models.lora import lora_layers, lora_switched_off

    merge, save_keras = source_module.merged_copy, keras_export.save_keras
    write_lora, factors = keras_export.write_lora_adapter, peft_export.peft_factors

    def base_merge(lm):
        with lora_switched_off(lm):
            return merge(lm)

    def base_save(model, folder):
        if not lora_layers(model):
            return save_keras(model, folder)
        with lora_switched_off(model):
            return save_keras(model, folder)

    def base_adapter(lm, folder, base_model):
        with lora_switched_off(lm):
            return write_lora(lm, folder, base_model)

    def zero_b(layer):
        lora_a, lora_b, rank, alpha = factors(layer)
        return lora_a, np.zeros_like(lora_b), rank, alpha

    monkeypatch.setattr(tiny_source, "_merged", None)  # merge again, with the broken merge
    monkeypatch.setattr(source_module, "merged_copy", base_merge)
    monkeypatch.setattr(keras_export, "save_keras", base_save)
    monkeypatch.setattr(keras_export, "write_lora_adapter", base_adapter)
    monkeypatch.setattr(peft_export, "peft_factors", zero_b)


def _export(tiny_source, tmp_path, monkeypatch, fmt, quantize, merge):
    from gemma_panel.export import hf

    if fmt == "peft":
        pytest.importorskip("peft")
    # as in test_hugging_face_folder_in_transformers: the tiny tokenizer's two-space piece
    monkeypatch.setattr(hf, "TOKENIZER_PROBE", hf.TOKENIZER_PROBE.replace("  ", " "))
    return export_model(tiny_source, fmt, tmp_path / "out" / fmt, quantize=quantize,
                        merge=merge)


@pytest.mark.parametrize("fmt, quantize, merge, name",
                         [c for c in CARRIED if c != KERAS_INT8],
                         ids=[i for c, i in zip(CARRIED, CARRIED_IDS) if c != KERAS_INT8])
def test_the_lora_is_measurably_in_every_export(tiny_source, tmp_path, monkeypatch, fmt,
                                                quantize, merge, name):
    found = checks(_export(tiny_source, tmp_path, monkeypatch, fmt, quantize, merge))[name]
    print(f"{fmt} {quantize or ''}: {found['detail']}")
    assert found["passed"], found
    # closer to the tuned model than to the base, by more than 3x the measured noise
    assert found["margin"] > found["bound"] == LORA_MARGIN_K * found["noise"] > 0
    assert found["d_base"] > found["d_tuned"]


@pytest.mark.parametrize("fmt, quantize, merge, name", CARRIED, ids=CARRIED_IDS)
def test_an_export_that_drops_the_lora_fails_verification(tiny_source, tmp_path, monkeypatch,
                                                          drop_lora, fmt, quantize, merge,
                                                          name):
    with pytest.raises(VerificationError, match=name) as failed:
        _export(tiny_source, tmp_path, monkeypatch, fmt, quantize, merge)
    print(f"{fmt} {quantize or ''}: {failed.value}")
    assert list((tmp_path / "out").iterdir()) == []
