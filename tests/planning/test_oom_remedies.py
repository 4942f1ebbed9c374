"""After a run died of memory exhaustion, the plan's remedies: even where the estimate said it
fits (the run has shown it does not), ordered by what they cost in quality."""

from __future__ import annotations

import dataclasses

from gemma_panel.models.registry import MODELS
from gemma_panel.planning.memory import GIB, ModelSize, TrainingShape, out_of_memory_remedies

SMALL = ModelSize.of_spec(MODELS["gemma3-270m"])


def test_a_run_the_estimate_said_fits_still_gets_remedies_cheapest_first():
    run = TrainingShape(sequence_length=1024, batch_size=8)
    remedies = out_of_memory_remedies(SMALL, run, "cpu", 64 * GIB)  # fits 64 GiB on paper
    assert remedies[0].startswith("train.batch_size=2 with train.gradient_accumulation x4")


def test_at_batch_one_remat_and_precision_come_before_cutting_the_sequences():
    run = TrainingShape(sequence_length=2048, batch_size=1)
    remedies = out_of_memory_remedies(SMALL, run, "gpu", 80 * GIB)
    assert remedies[0].startswith("then memory.remat=true")  # no quality cost
    assert not any("batch_size" in r or "sequence_length" in r for r in remedies)
    remedies = out_of_memory_remedies(SMALL, dataclasses.replace(run, remat=True), "gpu",
                                      80 * GIB)
    assert remedies[0].startswith("then model.dtype=mixed_bfloat16")
