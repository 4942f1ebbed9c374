"""The estimate's state per ``memory.base_weights`` (weights as stored, LoRA factors, AdamW
moments) against XLA's compiled memory analysis of the real train step on the tiny model.

``memory.remat`` is not checked here: on CPU XLA's compiled temporaries of the tiny model are
the same with and without it (its peak is not the kept activations), so the remat estimate
rests on training/remat.py's rule (block inputs kept, one block recomputed) and the
backward-pass residuals tests/training/test_memory_modes.py measures.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from gemma_panel.planning.memory import ModelSize, TrainingShape, estimate_memory
from tests.models.tiny_gguf import write_tiny_gemma_gguf
from tests.training.test_memory_modes import BATCH, LENGTH, arrays, prepare

STATE = ("weights", "trainable copy", "optimizer (AdamW, 2 moments)")
RUN = TrainingShape(sequence_length=LENGTH, batch_size=BATCH, rank=4,
                    targets=("query", "value", "ffw_linear"))


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gemma_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", "gemma3",
                                 hidden=64, heads=2, kv_heads=1, head_dim=256, ffn=128,
                                 layers=2)


def state_xla_allocates(gguf, *overrides) -> tuple[int, ModelSize]:
    steps, seq = prepare(gguf, *overrides)
    trainable, opt_state, frozen = steps.initial_state()
    batch, key = arrays(seq, 0), jax.random.PRNGKey(0)
    compiled = steps.train_step.lower(trainable, opt_state, frozen, batch, key).compile()
    inputs = sum(np.asarray(a).nbytes for a in (*batch, key))
    return compiled.memory_analysis().argument_size_in_bytes - inputs, steps.backbone


@pytest.mark.parametrize("base", ["float32", "int8"])
def test_the_state_by_base_weights_is_what_xla_allocates(tiny_gguf, base):
    xla, backbone = state_xla_allocates(tiny_gguf, f"memory.base_weights={base}")
    if base == "float32":
        size = ModelSize.of_backbone(backbone)
    else:  # the int8 backbone counts its scales as parameters: size the float32 one
        size = ModelSize.of_backbone(state_xla_allocates(tiny_gguf)[1])
    estimate = estimate_memory(size, dataclasses.replace(RUN, base_weights=base))
    assert sum(estimate.parts[p] for p in STATE) == pytest.approx(xla, rel=0.05)
