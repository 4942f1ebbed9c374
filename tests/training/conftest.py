"""A tiny random Gemma 3 and a tiny instruction dataset, for trainer tests in seconds."""

from __future__ import annotations

import json

import pytest

from tests.models.tiny_gguf import write_tiny_gemma_gguf

TINY = {"hidden": 64, "heads": 2, "kv_heads": 1, "head_dim": 256, "ffn": 128, "layers": 2}


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gemma_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", "gemma3", **TINY)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """40 prompt/response rows with one fixed answer pattern, easy to overfit."""
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    with path.open("w") as handle:
        for i in range(40):
            row = {"prompt": f"Add one to {i}.", "response": f"The answer is {i + 1}."}
            handle.write(json.dumps(row) + "\n")
    return path


@pytest.fixture
def tiny_recipe(tiny_gguf, tiny_data):
    """A recipe for the tiny model: 6 steps, evaluation every 3, checkpoints every 2."""
    from gemma_panel.config import load_recipe

    def make(*overrides):
        return load_recipe(None, [
            f"model.source={tiny_gguf}", f"data.train_path={tiny_data}",
            "data.sequence_length=48", "data.validation_fraction=0.2", "train.max_steps=6",
            "train.warmup_steps=1", "train.batch_size=2", "train.checkpoint_every=2",
            "train.learning_rate=0.003", "eval.every_steps=3", "eval.num_samples=2",
            "eval.task_examples=2", "eval.max_new_tokens=6", *overrides,
        ])

    return make


@pytest.fixture(scope="session")
def tiny_gemma2_gguf(tmp_path_factory):
    """A tiny random Gemma 2: logit soft-caps (attention 50, final 30), a sliding window of
    6 tokens on every other layer."""
    return write_tiny_gemma_gguf(tmp_path_factory.mktemp("tiny2") / "tiny2.gguf", "gemma2",
                                 **{**TINY, "head_dim": 32}, sliding_window=6)
