"""The estimate's per-device state (weights, LoRA factors, AdamW moments) against XLA's
compiled memory analysis of the real sharded train step on 8 simulated devices."""

from __future__ import annotations

import pytest

from gemma_panel.planning.memory import ModelSize, TrainingShape, estimate_memory
from gemma_panel.training.flops import Shape
from tests.distribution import sharded_run
from tests.distribution.test_sharded_training import report  # noqa: F401 (the fixture)

STATE = ("weights", "trainable copy", "optimizer (AdamW, 2 moments)")


def tiny_size() -> ModelSize:
    """sharded_run's tiny Gemma 3, counted from its shape (norm scales included)."""
    d, heads, kv, h, f, v, layers = 64, 4, 1, 32, 128, sharded_run.VOCAB, 2
    per_layer = heads * d * h * 2 + 2 * kv * d * h + 3 * d * f + 4 * d + 2 * h
    shape = Shape(d, heads, kv, h, f, v, (None,) * layers, 0)
    return ModelSize(v * d + layers * per_layer + d, layers, shape)


@pytest.mark.parametrize("strategy", ["single", "data_parallel", "fsdp"])
def test_the_state_per_device_is_what_xla_allocates(report, strategy):  # noqa: F811
    run = TrainingShape(sequence_length=sharded_run.LENGTH, batch_size=sharded_run.BATCH,
                        rank=4, targets=tuple(sharded_run.TARGETS))
    estimate = estimate_memory(tiny_size(), run, "cpu", None, strategy, 8)
    state = sum(estimate.parts[p] for p in STATE)
    xla = report[strategy]["argument_bytes"]  # the state and one batch
    assert state == pytest.approx(xla, rel=0.05)
