"""Exports of a tiny LoRA-tuned Gemma 4 (dense): Hugging Face (loads in transformers'
``Gemma4ForCausalLM`` and back through our loader), the KerasHub formats (the preset back
through our loader), and GGUF (llama.cpp's gemma4 layout, read back through our loader)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gemma_panel.export import export_model
from tests.export.conftest import tiny_overrides
from tests.export.test_exports_tiny import assert_finished, checks
from tests.models.tiny_hf_gemma4 import write_tiny_gemma4


@pytest.fixture(scope="module")
def gemma4_run(tmp_path_factory):
    """(run folder, export source): 4 LoRA steps on a tiny random Gemma 4."""
    from gemma_panel.config import load_recipe
    from gemma_panel.export import load_run_model
    from gemma_panel.runs import RunStore
    from gemma_panel.training import train

    folder = tmp_path_factory.mktemp("gemma4-export") / "hf"
    write_tiny_gemma4(folder, "dense")
    # The tiny byte-level tokenizer makes long sequences of the example prompts.
    recipe = load_recipe(None, tiny_overrides(folder) + ["name=tiny-gemma4",
                                                         "data.sequence_length=192"])
    run = RunStore().create_run(recipe)
    result = train(recipe, run.run_dir)
    assert result.status == "succeeded", result.message
    return Path(run.run_dir), load_run_model(run.run_dir)


def test_hugging_face_export_loads_in_transformers_and_back(gemma4_run, tmp_path):
    import torch
    from transformers import AutoTokenizer, Gemma4ForCausalLM

    from gemma_panel.data.templates import render_text
    from gemma_panel.data.templates_gemma4 import Gemma4ChatTemplate
    from gemma_panel.export.verify import keras_logits, probe_ids

    _, source = gemma4_run
    result = export_model(source, "hf", tmp_path / "hf")
    assert_finished(result, "transformers_logits", "transformers_carries_lora",
                    "greedy_generation", "autotokenizer_probe",
                    "autotokenizer_whitespace_and_turns", "chat_template")
    assert checks(result)["transformers_logits"]["max_abs_diff"] <= 1e-3
    config = json.loads((result.path / "config.json").read_text())
    assert config["architectures"] == ["Gemma4ForCausalLM"]
    assert config["rope_parameters"]["full_attention"]["rope_type"] == "proportional"
    generation = json.loads((result.path / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(result.path))
    assert generation["eos_token_id"] == [tokenizer.eos_token_id,
                                          tokenizer.convert_tokens_to_ids("<turn|>")]

    ids = probe_ids(source.lm)
    reference = keras_logits(source.lm, ids)
    hf = Gemma4ForCausalLM.from_pretrained(str(result.path), dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = hf(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(theirs, reference, atol=1e-3)

    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}]
    from gemma_panel.data.example import Example
    from gemma_panel.data.messages import normalize_messages

    turns, _ = normalize_messages(chat)
    ours = render_text(Gemma4ChatTemplate().segments(Example(messages=turns)))
    assert tokenizer.apply_chat_template(chat, tokenize=False) == "<bos>" + ours + "\n"

    from gemma_panel.models import load_model

    again = load_model(str(result.path))  # our own export, back through our loader
    np.testing.assert_allclose(keras_logits(again, ids), reference, atol=1e-5)


@pytest.mark.parametrize("fmt", ["keras", "preset"])
def test_keras_formats(gemma4_run, tmp_path, fmt):
    _, source = gemma4_run
    result = export_model(source, fmt, tmp_path / fmt)
    name = "keras_load_model_logits" if fmt == "keras" else next(
        n for n in checks(result) if n.endswith("logits"))
    assert_finished(result, name)


@pytest.mark.parametrize("file_type", ["f32", "q8_0"])
def test_gguf_export_reads_back_as_the_tuned_model(gemma4_run, tmp_path, file_type):
    """llama.cpp's gemma4 layout, and the file through `load_model` carries the LoRA."""
    from gemma_panel.export.verify import keras_logits, probe_ids
    from gemma_panel.models import load_model

    _, source = gemma4_run
    result = export_model(source, "gguf", tmp_path / "gguf", quantize=file_type)
    assert_finished(result, "gguf_metadata_keys", "gguf_tensor_names",
                    "gguf_dequantized_within_bound", "gguf_carries_lora", "modelfile",
                    *(["gemma_panel_gguf_logits"] if file_type == "f32" else []))
    assert '<|turn>model' in (result.path / "Modelfile").read_text()

    ids = probe_ids(source.lm)
    reference = keras_logits(source.lm, ids)
    again = load_model(str(result.path / "model.gguf"))
    difference = float(np.abs(keras_logits(again, ids) - reference).max())
    print(f"GGUF {file_type}: max |logit difference| from the tuned model {difference:.2e}")
    assert difference <= (1e-3 if file_type == "f32" else 0.1)
