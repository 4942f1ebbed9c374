"""Time from FLOPs over peak x MFU (or a measured step), and costs from the dated table."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_panel.config import load_recipe
from gemma_panel.models.registry import MODELS
from gemma_panel.planning import time as plan_time
from gemma_panel.planning.hardware import HardwareError, named_hardware
from gemma_panel.planning.memory import ModelSize
from gemma_panel.planning.prices import PriceError, costs, load_prices
from gemma_panel.planning.report import make_plan, total_steps
from gemma_panel.planning.stats import DatasetStats

SMALL = ModelSize.of_spec(MODELS["gemma3-270m"])
STATS = DatasetStats.of_lengths(np.full(300, 40), np.full(300, 30), "instruction")


def test_lora_costs_about_two_thirds_of_full_fine_tuning_per_token():
    lora = plan_time.lora_shape(SMALL, True, 8, ["query", "value"])
    full = plan_time.epoch_flops(SMALL.shape, STATS, 256, full=True)
    part = plan_time.epoch_flops(lora, STATS, 256, full=False)
    assert 0.6 < part / full < 0.75
    tokens = STATS.kept_tokens(256) - STATS.examples  # n tokens give n - 1 positions
    assert full / tokens > 6 * (SMALL.params - SMALL.shape.vocab * SMALL.shape.hidden)


def test_time_is_flops_over_peak_times_mfu_and_devices():
    recipe = load_recipe(None, ["data.sequence_length=128"])
    steps = total_steps(recipe, STATS)
    one = plan_time.estimate_time(recipe, SMALL, STATS, named_hardware("l4"), steps, mfu=0.5)
    four = plan_time.estimate_time(recipe, SMALL, STATS, named_hardware("l4:4"), steps,
                                   mfu=0.5)
    assert one.seconds == pytest.approx(one.flops / (121e12 * 0.5 * 0.5))  # float32: TF32
    assert four.seconds == pytest.approx(one.seconds / 4)
    mixed = load_recipe(None, ["data.sequence_length=128", "model.dtype=mixed_bfloat16"])
    fast = plan_time.estimate_time(mixed, SMALL, STATS, named_hardware("l4"), steps, mfu=0.5)
    assert fast.seconds == pytest.approx(one.seconds / 2)
    timed = plan_time.Calibration(load_seconds=10, compile_seconds=5, step_seconds=2.0,
                                  token_seconds=0.1)
    measured = plan_time.estimate_time(recipe, SMALL, STATS, named_hardware("l4"), steps,
                                       calibration=timed)
    e = recipe.eval
    evaluations = -(-steps // e.every_steps)
    # every evaluation generates two batches (sample prompts, task rows), the base model
    # the samples' once: each batch max_new_tokens decoding steps, all its rows at once
    generation = (2 * evaluations + 1) * e.max_new_tokens * 0.1
    assert measured.seconds == pytest.approx(2.0 * steps + generation + 10 + 2 * 5)
    assert "2.00 s per step" in measured.method


def test_calibrated_generation_counts_batches_not_answers():
    """An evaluation's answers are decoded together (training/samples.py): 12 sample prompts
    take as long as 3, 17 take a second batch; the task rows' batch has its own rate."""
    def seconds(*overrides, timed=None):
        timed = timed or plan_time.Calibration(0, 0, 1.0, 0.1)
        recipe = load_recipe(None, ["eval.every_steps=10", "eval.max_new_tokens=40",
                                    *overrides])
        return plan_time.estimate_time(recipe, SMALL, STATS, named_hardware("l4"), 20,
                                       calibration=timed).seconds
    few = seconds("eval.num_samples=3", "eval.task_examples=6")
    assert seconds("eval.num_samples=12", "eval.task_examples=16") == pytest.approx(few)
    assert seconds("eval.num_samples=17", "eval.task_examples=6") == pytest.approx(
        few + 3 * 40 * 0.1)  # a second sample batch: base and 2 evaluations
    slower_tasks = plan_time.Calibration(0, 0, 1.0, 0.1, task_token_seconds=0.3,
                                         generation_compile_seconds=7)
    assert seconds("eval.num_samples=3", "eval.task_examples=6", timed=slower_tasks) == \
        pytest.approx(few + 2 * 40 * 0.2 + 7)


def test_the_cpu_peak_is_the_trainers_measured_once_and_cached(monkeypatch, tmp_path):
    from gemma_panel.training import flops

    monkeypatch.setenv("GEMMA_PANEL_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(flops, "time_matmul_peak", lambda dtype: calls.append(1) or 1e11)
    first = plan_time.measured_peak()
    assert plan_time.measured_peak() == first == 1e11 and len(calls) == 1


def test_costs_come_from_the_dated_table_and_a_user_file_overrides_rows(tmp_path):
    shipped = load_prices()
    (on_demand,) = [c for c in costs("tpu-v5e", 8, 1800, shipped) if c.offer == "on_demand"]
    assert on_demand.usd == pytest.approx(8 * 0.5 * 1.20)
    assert on_demand.date == "2026-01-27" and "estimate" in on_demand.line()
    assert costs("a100-80gb", 1, 3600, shipped) == []  # no price found: none made up
    (v6e,) = [c for c in costs("tpu-v6e", 1, 3600, shipped) if c.offer == "on_demand"]
    assert v6e.usd == pytest.approx(2.7) and "SkyPilot GCP catalog" in v6e.source
    mine = tmp_path / "prices.yaml"
    mine.write_text("prices:\n  tpu-v6e:\n    spot:\n      usd_per_device_hour: 1.0\n"
                    "      date: 2026-12-01\n      source: my contract\n")
    (row,) = [c for c in costs("tpu-v6e", 2, 3600, load_prices(mine)) if c.offer == "spot"]
    assert (row.offer, row.usd, row.source) == ("spot", 2.0, "my contract")
    with pytest.raises(PriceError, match="no such price file"):
        load_prices(tmp_path / "absent.yaml")


def test_unknown_hardware_names_say_what_exists():
    with pytest.raises(HardwareError, match="tpu-v5e, tpu-v6e"):
        named_hardware("tpu-v9")
    with pytest.raises(HardwareError, match="whole number"):
        named_hardware("h100:two")


def test_a_plan_on_a_tpu_slice_has_memory_per_strategy_time_and_cost():
    recipe = load_recipe(None, ["data.sequence_length=128"])
    plan = make_plan(recipe, named_hardware("tpu-v5e:8"), STATS, SMALL)
    assert [m.strategy for m in plan.memory] == ["data_parallel", "fsdp", "model_parallel"]
    assert all(m.badge == "fits" for m in plan.memory)
    assert plan.time.seconds > 0 and plan.costs
    data = plan.to_dict()
    assert data["costs"][0]["estimate"] is True and data["warnings"] == []


def test_apply_sets_the_recommended_values_and_keeps_the_recipe_valid():
    from gemma_panel.planning.recommend import recommend
    from gemma_panel.planning.report import apply_recommendations

    recipe = load_recipe(None, ["train.learning_rate=0.005", "train.epochs=1"])
    recs = recommend(recipe, STATS, "l4")
    one = apply_recommendations(recipe, recs, fields={"train.epochs"})
    assert (one.train.epochs, one.train.learning_rate) == (3.0, 0.005)
    every = apply_recommendations(recipe, recs)
    settings = {r.field: r.value for r in recs if r.kind == "setting"}
    assert every.train.learning_rate == settings["train.learning_rate"] == 2e-4
    assert every.model.dtype == "mixed_bfloat16" and every.data.sequence_length == 128


def test_packed_rows_are_counted_as_the_trainer_packs_them():
    from types import SimpleNamespace

    from gemma_panel.training.batches import build_sequences

    rng = np.random.default_rng(3)
    prompt, target = rng.integers(5, 90, 400), rng.integers(1, 60, 400)
    examples = [SimpleNamespace(input_ids=[7] * int(p + t), loss_mask=[0] * int(p) + [1] * int(t))
                for p, t in zip(prompt, target)]
    stats = DatasetStats.of_lengths(prompt, target, "instruction")
    for length, pack in ((128, True), (64, True), (256, False)):
        assert stats.sequences(length, pack) == len(build_sequences(examples, length, pack))


def test_a_device_report_becomes_hardware_with_its_profile_peak_and_price():
    from gemma_panel.distribution.devices import DeviceReport
    from gemma_panel.planning.hardware import hardware_from_report

    tpu = DeviceReport("tpu", "TPU v5 lite", 8, 8, 16 * 2**30, 1, 0, True, "native")
    hw = hardware_from_report(tpu)
    assert (hw.count, hw.peak_flops, hw.price_key) == (8, 197e12, "tpu-v5e")
    cpu = DeviceReport("cpu", "cpu", 1, 1, None, 1, 0, False, "no AMX")
    hw = hardware_from_report(cpu, peak_flops=1e11)
    assert hw.memory_per_device > 0 and hw.peak_flops == 1e11 and hw.price_key is None
