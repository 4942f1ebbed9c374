"""`recommend` on datasets of 10, 300, 10,000 and 200,000 examples, short and long,
classification and chat: each value and the words of its reason."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_panel.config import load_recipe
from gemma_panel.planning.recommend import ALL_TARGETS, recommend
from gemma_panel.planning.stats import DatasetStats


def short(n, task="instruction", seed=0):
    rng = np.random.default_rng(seed)
    return DatasetStats.of_lengths(rng.integers(20, 40, n), rng.integers(10, 30, n), task)


def long(n, task="chat", seed=0):
    rng = np.random.default_rng(seed)
    return DatasetStats.of_lengths(rng.integers(500, 560, n), rng.integers(400, 460, n), task)


def by_field(recs):
    return {r.field: r for r in recs if r.kind == "setting"}


def warnings(recs):
    return [r for r in recs if r.kind == "warning"]


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(None, [])


def test_ten_examples_many_passes_a_small_adapter_and_tiny_batches(recipe):
    rec = by_field(recommend(recipe, short(10), None))
    assert rec["train.epochs"].value == 5
    assert rec["train.epochs"].reason.startswith("10 examples: 5 epochs")
    assert "LIMA" in rec["train.epochs"].source
    assert (rec["lora.rank"].value, rec["lora.target_layers"].value) == (8, ["query", "value"])
    assert rec["train.batch_size"].value * rec["train.gradient_accumulation"].value == 1
    assert rec["train.warmup_steps"].value >= 1


def test_three_hundred_examples_three_epochs_with_the_lima_reason(recipe):
    recs = recommend(recipe, short(300), None)
    rec = by_field(recs)
    epochs = rec["train.epochs"]
    assert epochs.value == 3
    assert epochs.reason.startswith("300 examples: 3 epochs; with fewer than 1,000 examples")
    assert "QLoRA" in epochs.source and "LIMA" in epochs.source
    assert rec["lora.alpha"].value == 2 * rec["lora.rank"].value
    assert rec["train.learning_rate"].value == 2e-4
    assert "QLoRA" in rec["train.learning_rate"].source
    # 300 short examples at most ~70 tokens: 64-multiples above the 99th percentile
    assert rec["data.sequence_length"].value == 128
    assert "99% of examples are at most" in rec["data.sequence_length"].reason
    assert rec["data.pack"].value is True and "padding" in rec["data.pack"].reason


def test_ten_thousand_classification_rows_one_pass_rank_four_on_query_value(recipe):
    stats = DatasetStats.of_lengths(np.full(10_000, 60), np.full(10_000, 3), "classification")
    rec = by_field(recommend(recipe, stats, None))
    assert rec["train.epochs"].value == 1
    assert rec["lora.rank"].value == 4 and "KerasHub" in rec["lora.rank"].source
    assert rec["lora.target_layers"].value == ["query", "value"]
    assert "label" in rec["lora.rank"].reason
    total = rec["train.batch_size"].value * rec["train.gradient_accumulation"].value
    assert total == 16
    every = rec["eval.every_steps"]
    assert "points on the validation curve" in every.reason
    assert rec["eval.early_stopping_patience"].value is None  # one pass: too few to stop


def test_two_hundred_thousand_long_chats_one_pass_all_layers_rank_32(recipe):
    stats = long(200_000)
    rec = by_field(recommend(recipe, stats, None))
    assert rec["train.epochs"].value == 1
    assert "Chinchilla" in rec["train.epochs"].source
    assert "trained tokens" in rec["train.epochs"].reason
    assert rec["lora.rank"].value == 32 and rec["lora.target_layers"].value == ALL_TARGETS
    length = rec["data.sequence_length"].value
    assert length % 64 == 0 and stats.cut_share(length) <= 0.01
    assert rec["data.pack"].value is False  # long examples leave little padding
    assert rec["train.batch_size"].value * rec["train.gradient_accumulation"].value == 32


def test_a_long_tail_does_not_set_the_sequence_length(recipe):
    prompt = np.r_[np.full(990, 100), np.full(10, 3000)]
    stats = DatasetStats.of_lengths(prompt, np.full(1000, 50), "instruction")
    rec = by_field(recommend(recipe, stats, None))["data.sequence_length"]
    assert rec.value == 192  # 150 tokens, the 99th percentile, rounded up to 64s
    assert "(1.0% cut)" in rec.reason


def test_accelerators_get_mixed_precision_and_a_strategy_note(recipe):
    recs = recommend(recipe, short(300), "tpu-v5e:8")
    rec = by_field(recs)
    assert rec["model.dtype"].value == "mixed_bfloat16"
    assert rec["train.batch_size"].value % 8 == 0  # splits over the 8 devices
    note = next(r for r in recs if r.field == "distribution.strategy")
    assert note.kind == "note" and note.value == "data_parallel"
    assert "'auto', chooses by the same rule" in note.reason
    assert by_field(recommend(recipe, short(300), None))["model.dtype"].value == "float32"


def test_a_model_too_big_for_one_device_is_split_with_fsdp():
    recipe = load_recipe(None, ["model.source=gemma3-27b"])
    recs = recommend(recipe, short(300), "tpu-v5e:8")
    note = next(r for r in recs if r.field == "distribution.strategy")
    assert note.value == "fsdp"
    assert by_field(recs)["model.dtype"].value == "bfloat16"


def test_a_run_that_fits_keeps_the_exact_fast_memory_mode(recipe):
    rec = by_field(recommend(recipe, long(300), None))  # the 270M on this machine's CPU
    assert rec["memory.remat"].value is False
    assert rec["memory.base_weights"].value == "float32"
    assert "fits without smaller base weights or recomputation" in rec["memory.remat"].reason


def test_a_model_too_big_in_float32_gets_remat_then_bfloat16_then_int8_base_weights():
    from gemma_panel.planning.report import apply_recommendations

    recipe = load_recipe(None, ["model.source=gemma3-12b"])
    remat = by_field(recommend(recipe, long(300), "h100"))
    assert remat["memory.remat"].value is True  # enough, and no quality cost
    assert remat["memory.base_weights"].value == "float32"
    assert remat["model.dtype"].value == "mixed_bfloat16"  # remat before bfloat16 weights
    assert "does not fit without memory.remat=true;" in remat["memory.remat"].reason
    half = by_field(recommend(recipe, long(300), "a100-40gb"))  # 2 bytes a weight are enough
    assert half["memory.base_weights"].value == "bfloat16" and half["memory.remat"].value
    assert "a100-40gb's 37 GiB" in half["memory.base_weights"].reason
    assert "half the memory" in half["memory.base_weights"].reason
    recs = recommend(recipe, long(300), "l4")
    rec = by_field(recs)
    assert rec["memory.base_weights"].value == "int8" and rec["memory.remat"].value is True
    assert "l4's" in rec["memory.base_weights"].reason
    assert rec["memory.base_weights"].source.startswith("QLoRA")
    applied = apply_recommendations(recipe, recs)
    assert (applied.memory.base_weights, applied.memory.remat) == ("int8", True)


def test_full_fine_tuning_is_never_given_int8_base_weights():
    recipe = load_recipe(None, ["model.source=gemma3-12b", "lora.enabled=false"])
    rec = by_field(recommend(recipe, long(300), "l4"))
    assert rec["memory.base_weights"].value == "float32"
    assert rec["memory.remat"].value is True
    assert "even with memory.remat=true it needs" in rec["memory.remat"].reason


def test_every_setting_names_a_real_recipe_field_and_a_source(recipe):
    from gemma_panel.config.fields import schema_field

    for rec in recommend(recipe, long(10_000), "h100"):
        if rec.kind == "setting":
            schema_field(rec.field)  # KeyError for an invented field
        assert rec.source and rec.reason.endswith(".")


# -- warnings -----------------------------------------------------------------------------
def test_a_learning_rate_far_outside_loras_range_is_warned():
    recs = recommend(load_recipe(None, ["train.learning_rate=0.005"]), short(300), None)
    (w,) = [r for r in warnings(recs) if r.field == "train.learning_rate"]
    assert "far outside LoRA's working range" in w.reason and w.current == 0.005
    assert not [r for r in warnings(recommend(load_recipe(None, []), short(300), None))
                if r.field == "train.learning_rate"]


def test_more_epochs_than_the_data_supports_are_warned():
    recs = recommend(load_recipe(None, ["train.epochs=20"]), short(10_000), None)
    (w,) = [r for r in warnings(recs) if r.field == "train.epochs"]
    assert w.value == 1 and "will memorise them" in w.reason


def test_a_sequence_length_that_cuts_most_answers_and_their_stop_token():
    recs = recommend(load_recipe(None, ["data.sequence_length=256"]), long(300), None)
    texts = [r.reason for r in warnings(recs) if r.field == "data.sequence_length"]
    assert any("most answers lose their ends" in t for t in texts)
    assert any("end-of-turn token" in t for t in texts)


def test_a_chat_template_of_another_family_is_warned():
    recipe = load_recipe(None, ["model.source=gemma4-e2b", "data.template=gemma"])
    (w,) = [r for r in warnings(recommend(recipe, short(300), None))
            if r.field == "data.template"]
    assert w.value == "auto" and "gemma4" in w.reason
    ok = load_recipe(None, ["model.source=gemma4-e2b", "data.template=auto"])
    assert not [r for r in warnings(recommend(ok, short(300), None))
                if r.field == "data.template"]


def test_a_run_that_will_not_fit_is_warned():
    recipe = load_recipe(None, ["model.source=gemma3-12b", "lora.enabled=false",
                                "train.learning_rate=2e-5"])
    (w,) = [r for r in warnings(recommend(recipe, short(300), "l4"))
            if r.field == "train.batch_size"]
    assert "out of memory" in w.reason
