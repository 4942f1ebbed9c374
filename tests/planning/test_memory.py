"""The memory estimate: monotone where memory grows, divided where fsdp splits, a badge
that says fits / does not fit, remedies that make it fit, and LoRA sizes Keras agrees with."""

from __future__ import annotations

import dataclasses

import pytest

from gemma_panel.models.registry import MODELS
from gemma_panel.planning.memory import (
    GIB,
    ModelSize,
    TrainingShape,
    estimate_memory,
    with_remedies,
)

SMALL = ModelSize.of_spec(MODELS["gemma3-270m"])
BIG = ModelSize.of_spec(MODELS["gemma3-12b"])
RUN = TrainingShape(sequence_length=256, batch_size=4, rank=8)


@pytest.mark.parametrize("name, values", [
    ("sequence_length", (64, 256, 1024, 4096)),
    ("batch_size", (1, 2, 8, 32)),
    ("rank", (4, 8, 64, 256)),
])
def test_memory_grows_with_length_batch_and_rank(name, values):
    totals = [estimate_memory(SMALL, dataclasses.replace(RUN, **{name: v})).total
              for v in values]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)


def test_full_fine_tuning_needs_far_more_than_lora():
    lora = estimate_memory(BIG, RUN, "gpu")
    full = estimate_memory(BIG, dataclasses.replace(RUN, lora=False), "gpu")
    assert full.parts["optimizer (AdamW, 2 moments)"] == 2 * BIG.params * 4
    assert full.total > 3 * lora.total


def test_fsdp_divides_weights_and_optimizer_by_the_device_count():
    one = estimate_memory(BIG, dataclasses.replace(RUN, lora=False), "tpu", None, "single")
    eight = estimate_memory(BIG, dataclasses.replace(RUN, lora=False), "tpu", None, "fsdp", 8)
    for part in ("weights", "optimizer (AdamW, 2 moments)", "gradients"):
        assert eight.parts[part] == one.parts[part] // 8
    assert eight.parts["activations"] < one.parts["activations"]  # the batch is split too
    dp = estimate_memory(BIG, RUN, "tpu", None, "data_parallel", 8)
    assert dp.parts["weights"] == one.parts["weights"]  # replicated


def test_bfloat16_halves_the_weights_and_mixed_halves_the_activations():
    f32 = estimate_memory(SMALL, RUN)
    mixed = estimate_memory(SMALL, dataclasses.replace(RUN, dtype="mixed_bfloat16"))
    bf16 = estimate_memory(SMALL, dataclasses.replace(RUN, dtype="bfloat16"))
    assert mixed.parts["weights"] == f32.parts["weights"] == 2 * bf16.parts["weights"]
    assert mixed.parts["activations"] * 2 == f32.parts["activations"]


def test_the_badge_says_fits_or_does_not_fit():
    assert estimate_memory(SMALL, RUN, "gpu", 80 * 10**9).badge == "fits"
    full = dataclasses.replace(RUN, lora=False)
    assert estimate_memory(BIG, full, "gpu", 24 * 10**9).badge == "does not fit"
    assert estimate_memory(SMALL, RUN).badge == "unknown"  # capacity not known
    total = estimate_memory(SMALL, RUN, "gpu", 10**12).total
    assert estimate_memory(SMALL, RUN, "gpu", int(total / 0.9)).badge == "tight"


def test_remedies_add_up_cheapest_first_until_the_run_fits():
    run = dataclasses.replace(RUN, sequence_length=2048, batch_size=16)
    estimate = estimate_memory(BIG, run, "gpu", 80 * 10**9)
    assert estimate.badge == "does not fit"
    remedies = with_remedies(BIG, run, estimate, "gpu", share_cut=lambda n: 0.25).remedies
    assert remedies[0].startswith("train.batch_size=4 with train.gradient_accumulation x4")
    assert remedies[1].startswith("train.batch_size=1 with train.gradient_accumulation x16")
    assert [r.split("=")[0] for r in remedies[2:4]] == ["then model.dtype"] * 2
    assert "cutting 25% of examples" in remedies[4]
    assert all(r.endswith("does not fit") for r in remedies[:-1])
    assert remedies[-1].endswith(", fits") or remedies[-1].endswith("tight")
    small = estimate_memory(SMALL, RUN, "gpu", 80 * 10**9)
    assert with_remedies(SMALL, RUN, small, "gpu").remedies == []  # it fits already


def test_the_lora_size_from_the_shape_is_the_size_keras_builds(tmp_path):
    from gemma_panel.models import load_model
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    path = write_tiny_gemma_gguf(tmp_path / "t.gguf", "gemma3", hidden=64, heads=2,
                                 kv_heads=1, head_dim=32, ffn=128, layers=2)
    backbone = load_model(str(path), progress=False).backbone
    size = ModelSize.of_backbone(backbone)
    targets = ["query", "value", "attention_output", "ffw_linear"]
    backbone.enable_lora(4, target_layer_names=targets)
    assert size.lora_params(4, targets) == sum(int(v.numpy().size)
                                               for v in backbone.trainable_variables)
    assert size.params == sum(int(v.numpy().size) for v in backbone.weights
                              if "lora" not in v.path)
    assert estimate_memory(size, RUN).total < 2 * GIB  # the runtime and a little more


def test_when_nothing_in_the_recipe_fits_the_last_remedy_names_what_is_missing():
    huge = ModelSize.of_spec(MODELS["gemma3-27b"])
    run = dataclasses.replace(RUN, sequence_length=512, batch_size=16)
    estimate = with_remedies(huge, run, estimate_memory(huge, run, "gpu", 24 * 10**9), "gpu")
    assert all(r.endswith("does not fit") for r in estimate.remedies[:-1])
    assert estimate.remedies[-1].startswith("not recipe fields yet: remat")
    assert "smaller model" in estimate.remedies[-1]
