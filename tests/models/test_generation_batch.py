"""Batched generation, device sampling, incremental detokenizing and compiled-shape reuse."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gemma_panel.models import load_model
from gemma_panel.models.generation import SamplingOptions, StreamingGenerator, sample_on_device
from tests.models.test_gguf_import import TINY
from tests.models.tiny_gguf import write_tiny_gemma_gguf

PROMPTS = ["The quick brown fox", "Hi", "Numbers: one two three four five six seven eight",
           "Gemma is", "a b c d e f g h i j k l m n o p"]
GREEDY = SamplingOptions(max_new_tokens=12)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """A tiny Gemma 3 whose weights are re-drawn large enough that answers vary from token
    to token (the file's small weights repeat one token), so a wrong mask shows."""
    path = write_tiny_gemma_gguf(tmp_path_factory.mktemp("batch") / "tiny.gguf", "gemma3",
                                 seed=11, **TINY)
    lm = load_model(str(path), progress=False)
    rng = np.random.default_rng(0)
    for v in lm.variables:
        if len(v.shape) >= 2:
            fan_in = int(np.prod(v.shape[:-1])) if len(v.shape) > 2 else v.shape[0]
            v.assign((rng.standard_normal(v.shape) * 1.5 / np.sqrt(fan_in)).astype(v.dtype))
    return StreamingGenerator(lm)


def keras_hub_greedy(lm, prompt: str, new_tokens: int) -> list[int]:
    lm.compile(sampler="greedy")
    n_prompt = len(np.asarray(lm.preprocessor.tokenizer(prompt))) + 1
    out = lm.preprocessor.generate_preprocess([prompt], sequence_length=n_prompt + new_tokens)
    generated = lm.make_generate_function()(out, stop_token_ids=None)["token_ids"]
    return [int(t) for t in np.asarray(generated)[0, n_prompt:n_prompt + new_tokens]]


def test_greedy_batch_equals_one_by_one_and_keras_hub(gen):
    alone = [list(gen.stream_ids(p, GREEDY)) for p in PROMPTS]
    assert len({tuple(a) for a in alone}) == len(PROMPTS)  # the answers differ
    assert all(len(set(a)) > 2 for a in alone)  # and are not one repeated token
    assert gen.generate_ids_many(PROMPTS, GREEDY) == alone  # 5 rows, padded to 8 with copies
    assert alone[2] == keras_hub_greedy(gen.lm, PROMPTS[2], 12)
    texts = gen.generate_many(PROMPTS, GREEDY)
    assert texts == [gen.generate(p, GREEDY) for p in PROMPTS]


def test_each_row_stops_at_its_own_stop_token(gen):
    alone = [list(gen.stream_ids(p, GREEDY)) for p in PROMPTS]
    # row 0 stops at the first token it had not produced before; rows without it run on
    cut = next(k for k in range(2, 12) if alone[0][k] not in alone[0][:k])
    stop = alone[0][cut]
    saved = gen.stop_ids
    try:
        gen.stop_ids = saved | {stop}
        batch = gen.generate_ids_many(PROMPTS, GREEDY)
    finally:
        gen.stop_ids = saved
    expected = [a[: a.index(stop)] if stop in a else a for a in alone]
    assert batch[0] == alone[0][:cut]
    assert batch == expected
    assert any(len(row) == 12 for row in batch)


def test_top_k_1_sampling_equals_greedy(gen):
    top1 = SamplingOptions(max_new_tokens=12, greedy=False, top_k=1, temperature=0.7, seed=3)
    assert gen.generate_ids_many(PROMPTS, top1) == gen.generate_ids_many(PROMPTS, GREEDY)
    assert list(gen.stream_ids(PROMPTS[0], top1)) == list(gen.stream_ids(PROMPTS[0], GREEDY))


def test_device_sampling_filters_like_the_host_reference():
    logits = jax.numpy.array([[0.0, 5.0, 4.9, -3.0]])

    def draws(options, n=200):
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        return {int(sample_on_device(logits, k, options.temperature, options.top_p,
                                     options.static())[0]) for k in keys}

    assert draws(SamplingOptions(), 3) == {1}
    assert draws(SamplingOptions(greedy=False, top_k=1)) == {1}
    assert draws(SamplingOptions(greedy=False, top_k=2)) == {1, 2}
    assert draws(SamplingOptions(greedy=False, top_p=0.3)) == {1}
    assert draws(SamplingOptions(greedy=False, top_p=0.9)) == {1, 2}
    assert draws(SamplingOptions(greedy=False, temperature=10.0), 400) == {0, 1, 2, 3}


def test_stream_pieces_join_to_the_whole_decode(gen):
    options = SamplingOptions(max_new_tokens=24)
    for prompt in PROMPTS[:3]:
        ids = list(gen.stream_ids(prompt, options))
        pieces = list(gen.stream(prompt, options))
        assert len(pieces) > 1
        assert "".join(pieces) == gen.detokenize(ids)
    # byte-fallback pieces of one character arrive as one piece once complete
    euro = [int(i) for i in np.asarray(gen.tokenizer("€ ok é"))]
    assert "".join(gen.texts(euro)) == gen.detokenize(euro)
    assert all("\ufffd" not in piece for piece in gen.texts(euro))


def test_steps_return_token_ids_and_shapes_are_reused(gen):
    state = gen._state()
    token, cache, index, offsets, _ = gen._prefilled([gen.encode_prompt("Hi there")],
                                                     SamplingOptions(max_new_tokens=8), state)
    out, cache, key = gen._step(state, token, cache, index, offsets, jax.random.PRNGKey(0),
                                1.0, 1.0, sampling=GREEDY.static())
    assert out.shape == (1,) and out.dtype == np.int32  # one id per row, not the logits
    stop_ids = np.full(8, -1, dtype="int32")
    ids = gen._decode(state, token, cache, index, offsets, key, 1.0, 1.0, stop_ids,
                      np.int32(8), sampling=GREEDY.static(), steps=8)
    assert ids.shape == (1, 8)
    compiled = gen._step._cache_size(), gen._prefill._cache_size()
    list(gen.stream_ids("A different prompt, a little longer", SamplingOptions(max_new_tokens=8)))
    assert (gen._step._cache_size(), gen._prefill._cache_size()) == compiled


def test_gemma4_batch_equals_one_by_one(tmp_path):
    from tests.models.tiny_hf_gemma4 import write_tiny_gemma4

    write_tiny_gemma4(tmp_path / "hf", "per_layer_embeddings")
    gen4 = StreamingGenerator(load_model(str(tmp_path / "hf"), progress=False))
    prompts = ["the quick brown fox jumps", "hello",
               "how are you today? the lazy dog jumps over", "system user"]
    options = SamplingOptions(max_new_tokens=10)
    alone = [list(gen4.stream_ids(p, options)) for p in prompts]
    assert len({tuple(a) for a in alone}) == len(prompts)
    assert gen4.generate_ids_many(prompts, options) == alone


def test_chunked_prefill_equals_one_chunk(gen):
    prompts = [PROMPTS[2], PROMPTS[4]]  # about 17 tokens: five chunks of 4
    one_chunk = [list(gen.stream_ids(p, GREEDY)) for p in prompts]
    saved = gen.chunk
    try:
        gen.chunk = 4
        assert [list(gen.stream_ids(p, GREEDY)) for p in prompts] == one_chunk
        assert gen.generate_ids_many(prompts + PROMPTS[:2], GREEDY)[:2] == one_chunk
    finally:
        gen.chunk = saved


def test_a_prompt_of_a_new_length_compiles_nothing(gen):
    gen = StreamingGenerator(gen.lm)  # nothing compiled by the other tests
    options = SamplingOptions(max_new_tokens=8)
    list(gen.stream_ids("Hi", options))
    jitted = gen._fill, gen._prefill, gen._step
    compiled = [f._cache_size() for f in jitted]
    longer = "one two three four five six seven eight nine ten eleven twelve thirteen"
    assert len(gen.encode_prompt(longer)) > 16  # past the old 16-token width bucket
    list(gen.stream_ids(longer, options))
    assert [f._cache_size() for f in jitted] == compiled


def kernel_copies(gen) -> int:
    """Copies or transposes, in the compiled decode step, shaped as an attention kernel as
    stored or swapped: the per-call re-layout swapped_kernels is there to remove."""
    import re

    state = gen._state()
    token, cache, index, offsets, key = gen._prefilled(
        [gen.encode_prompt("Hi there")], SamplingOptions(max_new_tokens=8), state)
    text = gen._step.lower(state, token, cache, index, offsets, key, 1.0, 1.0,
                           sampling=GREEDY.static()).compile().as_text()
    shapes = set()
    for v in gen.lm.variables:
        if len(v.shape) == 3 and v.shape[0] > 1:
            shapes |= {",".join(map(str, v.shape)),
                       ",".join(map(str, (v.shape[1], v.shape[0], v.shape[2])))}
    ops = re.findall(r"= f32\[([0-9,]+)\]\{[0-9,]+\} (?:copy|transpose)\(", text)
    return sum(shape in shapes for shape in ops)


def test_the_decode_step_copies_no_attention_kernel_per_call(gen):
    from gemma_panel.models.generation import swapped_kernels

    per_layer = len(swapped_kernels(gen.lm)) / gen.lm.backbone.num_layers
    assert per_layer == 4  # query, key, value and output projections
    assert kernel_copies(gen) == 0
    plain = StreamingGenerator(gen.lm)
    plain._swapped = set()  # the kernels as stored: XLA re-lays them out every call
    assert kernel_copies(plain) > 0
    assert list(plain.stream_ids(PROMPTS[0], GREEDY)) == list(gen.stream_ids(PROMPTS[0], GREEDY))
