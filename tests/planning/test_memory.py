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
    assert remedies[2].startswith("then memory.remat=true")  # no quality cost: before dtype
    assert len(remedies) == 3
    assert all(r.endswith("does not fit") for r in remedies[:-1])
    assert remedies[-1].endswith(", fits") or remedies[-1].endswith("tight")
    small = estimate_memory(SMALL, RUN, "gpu", 80 * 10**9)
    assert with_remedies(SMALL, RUN, small, "gpu").remedies == []  # it fits already


def test_a_remedy_that_saves_nothing_is_not_offered(monkeypatch):
    """A mode whose extra copies outweigh what it halves is left out: here the bfloat16
    head is made to widen the whole embedding (as it did before narrow_head_terms), which
    on the 270M, whose embedding is most of it, costs more than the 2-byte weights save."""
    from gemma_panel.planning import memory

    small = ModelSize.of_spec(MODELS["gemma3-270m"])
    whole = small.shape.vocab * small.shape.hidden * 4
    monkeypatch.setattr(memory, "widened_chunk_bytes", lambda model: whole)
    run = dataclasses.replace(RUN, base_weights="float32")
    bf16 = dataclasses.replace(run, base_weights="bfloat16")
    assert estimate_memory(small, bf16).total > estimate_memory(small, run).total
    estimate = with_remedies(small, run, estimate_memory(small, run, "cpu", 10**8), "cpu")
    assert estimate.remedies and not any("base_weights=bfloat16" in r
                                         for r in estimate.remedies)


def test_bfloat16_base_weights_are_offered_for_the_270m():
    """With the embedding widened two 8192-row chunks at a time the mode saves on the 270M:
    measured 4448 MiB against float32's 4774 (benchmarks/memory_estimate.py --held-out)."""
    small = ModelSize.of_spec(MODELS["gemma3-270m"])
    run = dataclasses.replace(RUN, base_weights="float32", dtype="mixed_bfloat16", batch_size=1)
    bf16 = dataclasses.replace(run, base_weights="bfloat16")
    assert estimate_memory(small, bf16).total < estimate_memory(small, run).total
    capacity = estimate_memory(small, bf16).total + 1
    estimate = with_remedies(small, run, estimate_memory(small, run, "cpu", capacity), "cpu")
    assert estimate.remedies[0].startswith("then memory.base_weights=bfloat16")


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


def test_when_nothing_in_the_recipe_fits_every_setting_is_tried_cheapest_first():
    huge = ModelSize.of_spec(MODELS["gemma3-27b"])
    run = dataclasses.replace(RUN, sequence_length=512, batch_size=16)
    estimate = with_remedies(huge, run, estimate_memory(huge, run, "gpu", 24 * 10**9), "gpu",
                             share_cut=lambda n: 0.25)
    settings = [r.removeprefix("then ").split(" ")[0] for r in estimate.remedies[:-1]]
    assert settings == ["train.batch_size=4", "train.batch_size=1", "memory.remat=true",
                        "model.dtype=mixed_bfloat16", "memory.base_weights=bfloat16",
                        "memory.base_weights=int8",
                        "model.dtype=bfloat16", "data.sequence_length=256"]
    assert "cutting 25% of examples" in estimate.remedies[-2]
    assert all(r.endswith("does not fit") for r in estimate.remedies[:-1])
    assert estimate.remedies[-1].startswith("else a smaller model (model.source)")


ONE_B = ModelSize.of_spec(MODELS["gemma3-1b"])


def test_int8_base_weights_are_a_quarter_of_float32_plus_the_scales():
    f32 = estimate_memory(ONE_B, RUN, "gpu").parts
    int8 = estimate_memory(ONE_B, dataclasses.replace(RUN, base_weights="int8"), "gpu").parts
    assert f32["weights"] == ONE_B.params * 4
    assert 0.25 < int8["weights"] / f32["weights"] < 0.26  # the scales and norms: float32
    # the step dequantizes the tied embedding for the head (training/step.py)
    assert int8["dequantized embedding"] == ONE_B.shape.vocab * ONE_B.shape.hidden * 4
    full = dataclasses.replace(RUN, lora=False, base_weights="int8")  # validation refuses it
    assert estimate_memory(ONE_B, full, "gpu").parts["weights"] == f32["weights"]


def test_bfloat16_base_weights_are_2_bytes_with_two_float32_chunks_for_the_head():
    bf16 = estimate_memory(ONE_B, dataclasses.replace(RUN, base_weights="bfloat16")).parts
    assert bf16["weights"] == ONE_B.params * 2
    from gemma_panel.training.step import vocab_chunk_rows

    rows = vocab_chunk_rows(ONE_B.shape.vocab)  # the head widens two such chunks at once
    assert bf16["float32 embedding chunks for the head"] == 2 * rows * ONE_B.shape.hidden * 4
    assert sum(bf16.values()) < sum(estimate_memory(ONE_B, RUN).parts.values())  # it saves
    pure = dataclasses.replace(RUN, dtype="bfloat16", base_weights="bfloat16")
    assert "float32 embedding chunks for the head" not in estimate_memory(ONE_B, pure).parts


def test_remat_keeps_every_block_input_and_one_block():
    run = dataclasses.replace(RUN, sequence_length=2048)
    plain = estimate_memory(ONE_B, run, "gpu").parts["activations"]
    remat = estimate_memory(ONE_B, dataclasses.replace(run, remat=True), "gpu").parts
    inputs = 4 * 2048 * ONE_B.shape.hidden * 4  # batch x length x hidden x float32
    assert remat["activations"] == plain // ONE_B.layers + (ONE_B.layers - 1) * inputs
    assert remat["activations"] < plain / 10


def test_on_cpu_remat_saves_nothing_and_is_no_remedy():
    """XLA's CPU compile keeps the same temporaries under jax.checkpoint: the 270M at seq 256,
    batch 4 peaked at 6261 MiB with memory.remat and 6296 MiB without
    (benchmarks/memory_estimate.py --held-out)."""
    remat = dataclasses.replace(RUN, remat=True)
    assert estimate_memory(SMALL, remat, "cpu").parts == estimate_memory(SMALL, RUN, "cpu").parts
    assert estimate_memory(SMALL, remat, "gpu").total < estimate_memory(SMALL, RUN, "gpu").total
    run = dataclasses.replace(RUN, sequence_length=2048, batch_size=1)
    estimate = with_remedies(ONE_B, run, estimate_memory(ONE_B, run, "cpu", 6 * GIB), "cpu")
    assert estimate.remedies and not any("memory.remat" in r for r in estimate.remedies)
    assert estimate.remedies[0].startswith("then model.dtype=mixed_bfloat16")


@pytest.mark.parametrize("gigabytes, last, badge", [(16, "bfloat16", "fits"),
                                                     (9, "int8", "tight")])
def test_the_remedy_that_makes_it_fit_is_the_cheapest_base_weights_mode(gigabytes, last,
                                                                        badge):
    """A 4B at seq 512 with bfloat16 base weights needs 8.9 GiB, with int8 7.6 GiB (int8
    dequantizes the whole embedding for the head; bfloat16 widens two chunks of it)."""
    four_b = ModelSize.of_spec(MODELS["gemma3-4b"])
    run = dataclasses.replace(RUN, sequence_length=512, batch_size=1)
    capacity = gigabytes * 10**9
    estimate = with_remedies(four_b, run, estimate_memory(four_b, run, "gpu", capacity), "gpu")
    assert estimate.remedies[-1].startswith(f"then memory.base_weights={last}")
    assert estimate.remedies[-1].endswith(f", {badge}")
    assert all(r.endswith("does not fit") for r in estimate.remedies[:-1])
    done = dataclasses.replace(run, remat=True, dtype="mixed_bfloat16", base_weights=last)
    assert estimate_memory(four_b, done, "gpu", capacity).badge == badge


def test_the_fit_badge_follows_the_recipes_memory_section():
    from gemma_panel.config import load_recipe
    from gemma_panel.planning.hardware import named_hardware
    from gemma_panel.planning.report import memory_estimates

    def badge(*overrides):
        recipe = load_recipe(None, ["model.source=gemma3-12b", "data.sequence_length=512",
                                    "train.batch_size=1", "model.dtype=mixed_bfloat16",
                                    *overrides])
        (estimate,) = memory_estimates(recipe, named_hardware("l4"), None, BIG)
        return estimate

    plain, remat = badge(), badge("memory.remat=true")
    assert plain.badge == remat.badge == "does not fit"  # the weights alone: 48 GB
    assert remat.parts["activations"] < plain.parts["activations"] / 10
    assert badge("memory.remat=true", "memory.base_weights=int8").badge == "fits"


def test_loras_head_is_chunked_from_a_gigabyte_of_logits_full_fine_tuning_from_four():
    """1,024 loss positions x 262,144: 1 GiB of logits. LoRA's frozen embedding takes the
    fused chunks (training/head.py); full fine-tuning keeps them whole up to 4 GiB."""
    from gemma_panel.planning import memory

    model = memory.model_size("gemma3-270m")
    run = memory.TrainingShape(sequence_length=512, batch_size=4, answer_share=1.0)
    lora = memory._logits(model, run, 4, 1)
    full = memory._logits(model, dataclasses.replace(run, lora=False), 4, 1)
    assert memory.loss_positions(run, 4) * model.shape.vocab * 4 > memory.FUSED_LOGITS_BYTES
    assert full == memory.LOGIT_COPIES * 2048 * model.shape.vocab * 4
    assert lora < full / 8
