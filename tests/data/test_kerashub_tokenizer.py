"""The KerasHub adapter gives the same ids and masks as the SentencePiece one."""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

from gemma_panel.data.example import Example
from gemma_panel.data.templates import GemmaChatTemplate
from gemma_panel.data.tokenized import tokenize_example
from gemma_panel.data.tokenizer import KerasHubTokenizer


@pytest.fixture(scope="module")
def kerashub_tokenizer(sp_model_proto):
    keras_hub = pytest.importorskip("keras_hub")
    return KerasHubTokenizer(
        keras_hub.models.Gemma3Tokenizer(proto=sp_model_proto, has_vision_tokens=False))


def test_kerashub_adapter_matches_sentencepiece(kerashub_tokenizer, tokenizer):
    kh = kerashub_tokenizer
    assert (kh.bos_id, kh.eos_id, kh.pad_id) == (tokenizer.bos_id, tokenizer.eos_id,
                                                 tokenizer.pad_id)
    assert kh.end_of_turn_id == tokenizer.end_of_turn_id
    text = "What is the capital of France?\nParis."
    assert kh.encode(text) == tokenizer.encode(text)
    assert kh.decode(kh.encode(text)) == text
    example = Example(prompt="Convert 5 kilometres to miles.", response="About 3.1 miles.")
    a = tokenize_example(example, GemmaChatTemplate(), kh)
    b = tokenize_example(example, GemmaChatTemplate(), tokenizer)
    assert (a.input_ids, a.loss_mask) == (b.input_ids, b.loss_mask)
    assert a.trained_ids == kh.encode("About 3.1 miles.") + [kh.end_of_turn_id]
    assert kh.id_to_piece(kh.end_of_turn_id) == "<end_of_turn>"
