"""A tiny random Gemma 3 and a LoRA run on it whose tuned answers differ from the base's."""

from __future__ import annotations

import pytest

from tests.chat.tiny_run import tiny_recipe, write_tuned_checkpoint
from tests.models.tiny_gguf import write_tiny_gemma_gguf
from tests.training.conftest import TINY


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gemma_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", "gemma3", **TINY)


@pytest.fixture(scope="session")
def tuned_run(tmp_path_factory, tiny_gguf):
    """A run folder (recipe.yaml, one checkpoint with random LoRA ``B`` factors)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-chat"
    write_tuned_checkpoint(tiny_recipe(tiny_gguf), run_dir)
    return run_dir
