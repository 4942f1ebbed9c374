"""The real Gemma 3 270M: a batched evaluation answers as the one-by-one stream does."""

from __future__ import annotations

import pytest

from gemma_panel.models.generation import SamplingOptions, StreamingGenerator, chat_prompt

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "Name a prime number.",
             "Write one sentence about the sea, mentioning waves, the wind and a boat.",
             "2 + 2 =", "Translate to French: good morning, my friend, how are you today?"]


def test_real_batch_equals_one_by_one(real_model):
    gen = StreamingGenerator(real_model)
    options = SamplingOptions(max_new_tokens=24)
    prompts = [chat_prompt(q) for q in QUESTIONS]
    alone = [list(gen.stream_ids(p, options)) for p in prompts]
    assert all(alone)
    assert gen.generate_ids_many(prompts, options) == alone
    assert gen.generate_many(prompts, options) == [gen.detokenize(a) for a in alone]
