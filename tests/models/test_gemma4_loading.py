"""A Gemma 4 Hugging Face folder written by transformers loads through `load_model` into
KerasHub with the same logits, and Gemma folders KerasHub cannot convert are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemma_panel.models.errors import ModelSourceError
from gemma_panel.models.loader import resolve_source
from tests.models.tiny_hf_gemma4 import VARIANTS, write_tiny_gemma4

TEXT = "<bos>the quick brown fox<|turn>user\nhello world<turn|>"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tiny_gemma4_logits_match_transformers(tmp_path, variant):
    import torch

    from gemma_panel.data.tokenizer import KerasHubTokenizer
    from gemma_panel.models import load_model
    from gemma_panel.models.generation import StreamingGenerator

    folder = tmp_path / "hf"
    model, tokenizer = write_tiny_gemma4(folder, variant)
    files_before = sorted(p.name for p in folder.iterdir())
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits.numpy()

    lm = load_model(str(folder))
    assert type(lm).__name__ == "Gemma4CausalLM"
    end_of_turn = tokenizer.convert_tokens_to_ids("<turn|>")
    assert KerasHubTokenizer(lm.preprocessor.tokenizer).end_of_turn_id == end_of_turn
    assert StreamingGenerator(lm).stop_ids == {tokenizer.eos_token_id, end_of_turn}
    assert [int(i) for i in np.asarray(lm.preprocessor.tokenizer(TEXT))] == ids
    x = {"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), bool),
         "position_ids": np.arange(len(ids))[None]}
    ours = np.asarray(lm(x))
    print(f"{variant}: max |logit difference| {np.abs(ours - theirs).max():.2e}")
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert sorted(p.name for p in folder.iterdir()) == files_before  # the folder is untouched


def test_view_restores_what_the_converter_reads(tmp_path):
    from gemma_panel.models.hf_gemma4 import loadable_folder

    folder = tmp_path / "hf"
    write_tiny_gemma4(folder)
    config = json.loads((folder / "config.json").read_text())
    assert "global_head_dim" not in config  # transformers writes per_layer_config instead
    view = loadable_folder(folder)
    assert view != folder
    assert json.loads((view / "config.json").read_text())["global_head_dim"] == 16
    assert (view / "processor_config.json").is_file()
    assert (view / "model.safetensors").resolve() == (folder / "model.safetensors").resolve()
    assert loadable_folder(folder) == view  # made once


def test_data_checks_get_a_tokenizer_with_gemma4_turns(tmp_path):
    from gemma_panel.data.tokenizer import SentencePieceTokenizer
    from gemma_panel.models.loader import tokenizer_file

    folder = tmp_path / "hf"
    _, tokenizer = write_tiny_gemma4(folder)
    spm = SentencePieceTokenizer(tokenizer_file(str(folder)))
    assert spm.encode(TEXT) == tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert spm.turn_pieces == ("<|turn>", "<turn|>")
    assert spm.end_of_turn_id == tokenizer.convert_tokens_to_ids("<turn|>")


def test_text_only_gemma3n_is_refused_with_the_reason(tmp_path):
    folder = tmp_path / "g3n"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3n_text"}))
    with pytest.raises(ModelSourceError, match="whole multimodal Gemma 3n"):
        resolve_source(str(folder))
