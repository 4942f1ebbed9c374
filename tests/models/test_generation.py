"""Streaming generation against KerasHub's own generate, and the CLI around it."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_panel.cli import main
from gemma_panel.models import load_model
from gemma_panel.models.generation import SamplingOptions, StreamingGenerator, choose_token
from tests.models.test_gguf_import import TINY
from tests.models.tiny_gguf import write_tiny_gemma_gguf


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny.gguf"
    return write_tiny_gemma_gguf(path, "gemma3", seed=11, **TINY)


@pytest.fixture(scope="module")
def tiny_lm(tiny_path):
    return load_model(str(tiny_path), progress=False)


def test_greedy_stream_equals_keras_hub_generate(tiny_lm):
    prompt = "The quick brown fox"
    ours = list(StreamingGenerator(tiny_lm).stream_ids(prompt, SamplingOptions(max_new_tokens=12)))
    tiny_lm.compile(sampler="greedy")
    n_prompt = len(np.asarray(tiny_lm.preprocessor.tokenizer(prompt))) + 1
    out = tiny_lm.preprocessor.generate_preprocess([prompt], sequence_length=n_prompt + 12)
    generated = tiny_lm.make_generate_function()(out, stop_token_ids=None)["token_ids"]
    theirs = [int(t) for t in np.asarray(generated)[0, n_prompt : n_prompt + len(ours)]]
    assert len(ours) > 0
    assert ours == theirs


def test_sampling_is_seeded_and_differs_from_greedy(tiny_lm):
    gen = StreamingGenerator(tiny_lm)
    options = SamplingOptions(max_new_tokens=10, greedy=False, temperature=5.0, seed=7)
    first = list(gen.stream_ids("Gemma is", options))
    again = list(gen.stream_ids("Gemma is", options))
    greedy = list(gen.stream_ids("Gemma is", SamplingOptions(max_new_tokens=10)))
    assert first == again
    assert first != greedy


def test_choose_token_filters():
    logits = np.array([0.0, 5.0, 4.9, -3.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert choose_token(logits, SamplingOptions(), rng) == 1
    top1 = SamplingOptions(greedy=False, top_k=1)
    assert {choose_token(logits, top1, rng) for _ in range(20)} == {1}
    top2 = SamplingOptions(greedy=False, top_k=2, temperature=1.0)
    assert {choose_token(logits, top2, rng) for _ in range(200)} == {1, 2}
    nucleus = SamplingOptions(greedy=False, top_p=0.3)
    assert {choose_token(logits, nucleus, rng) for _ in range(50)} == {1}


def test_cli_generate_streams_text(tiny_path, tiny_lm, capsys):
    expected = StreamingGenerator(tiny_lm).generate("Numbers:", SamplingOptions(max_new_tokens=8))
    assert main(["generate", "--model", str(tiny_path), "--max-new-tokens", "8", "Numbers:"]) == 0
    assert capsys.readouterr().out == "Numbers:" + expected + "\n"


def test_cli_models_list_and_bad_model(capsys):
    from gemma_panel.models.registry import MODELS

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in MODELS)
    assert main(["generate", "--model", "/no/such/model.gguf", "hi"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err

