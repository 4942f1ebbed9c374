"""The Configure tab's plan as a plain object: recommendations from the data, the fit badge
for the devices, "apply" and "apply all" changing the recipe (plan_model.py)."""

from __future__ import annotations

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.planning.hardware import named_hardware
from gemma_panel.ui.config_model import ConfigModel
from gemma_panel.ui.data_checks import loaded_tokenizer
from gemma_panel.ui.jobs import Jobs
from tests.ui.conftest import UNIT_CONVERSIONS, tiny_overrides


@pytest.fixture
def measured(tiny_gguf):
    """The tiny model's recipe on the quickstart data, planned for one L4, data measured."""
    jobs = Jobs()
    recipe = load_recipe(None, ["name=plan", *tiny_overrides(tiny_gguf, 100)])
    cfg = ConfigModel(recipe, base_path=None, jobs=jobs, plan_hardware=named_hardware("l4"))
    jobs.wait(120)
    if loaded_tokenizer(str(tiny_gguf)) is None:  # the first test of this process
        assert "No token statistics yet" in cfg.plan.status  # no tab loaded it: no stats
        assert cfg.plan.recommendation("data.sequence_length") is None
    cfg.plan.measure()
    jobs.wait(180)
    return cfg, jobs


def test_recommendations_come_from_the_data_and_say_why(measured):
    cfg, _ = measured
    plan = cfg.plan
    assert plan.status == ""
    length = plan.recommendation("data.sequence_length")
    assert length.value % 64 == 0 and "99% of examples are at most" in length.reason
    epochs = plan.recommendation("train.epochs")
    # the quickstart's 314 lines, less the 10% validation split
    assert epochs.value == 3.0 and epochs.reason.startswith("283 examples: 3 epochs")
    assert plan.recommendation("train.max_steps") is None  # no rule, no advice
    assert {"train.epochs", "train.warmup_steps", "eval.every_steps"} <= \
        {r.field for r in plan.pending()}


def test_the_fit_badge_is_for_the_devices_planned_for(measured):
    cfg, _ = measured
    fit = cfg.plan.fit
    assert fit["badge"] == "fits" and fit["strategy"] == "single" and fit["remedies"] == []
    assert fit["hardware"].startswith("1 x l4") and 0 < fit["total_gib"] < fit["capacity_gib"]


def test_apply_sets_one_field_and_apply_all_sets_every_recommended_value(measured):
    cfg, jobs = measured
    plan = cfg.plan
    before = dict(cfg.settings)
    plan.apply("train.epochs")
    assert cfg.settings["train.epochs"] == 3.0
    assert {p for p in cfg.settings if cfg.settings[p] != before[p]} <= {"train.epochs"}
    wanted = {r.field: r.value for r in plan.pending()}
    assert wanted
    plan.apply_all()
    assert all(cfg.settings[p] == v for p, v in wanted.items()), cfg.settings
    assert cfg.errors == [] and cfg.recipe().train.epochs == 3.0
    assert cfg.message.startswith(f"Applied {len(wanted)} recommendations")
    jobs.wait(120)  # a new sequence length: measured again, then planned again
    assert plan.pending() == [] and plan.fit["badge"] == "fits"


def test_a_model_too_big_for_the_device_does_not_fit_and_the_badge_lists_remedies():
    jobs = Jobs()
    recipe = load_recipe(None, ["name=big", "model.source=gemma3-12b",
                                f"data.train_path={UNIT_CONVERSIONS}"])
    cfg = ConfigModel(recipe, base_path=None, jobs=jobs, plan_hardware=named_hardware("l4"))
    jobs.wait(60)
    fit = cfg.plan.fit
    assert fit["badge"] == "does not fit" and fit["total_gib"] > fit["capacity_gib"]
    assert any("memory.base_weights=int8" in r for r in fit["remedies"]), fit["remedies"]
    cfg.set("model.source", "gemma3-270m")  # the plan follows the recipe
    jobs.wait(60)
    assert cfg.plan.fit["badge"] == "fits"


def test_an_invalid_recipe_has_no_plan_until_it_is_valid():
    jobs = Jobs()
    cfg = ConfigModel(load_recipe(None, ["name=bad"]), base_path=None, jobs=jobs,
                      plan_hardware=named_hardware("l4"))
    jobs.wait(60)
    assert cfg.plan.recommendations
    cfg.set("train.learning_rate", -1.0)
    assert cfg.plan.recommendations == [] and cfg.plan.fit == {}
    assert cfg.plan.status == "The plan waits for a valid recipe."


def test_without_a_hardware_given_the_plan_is_for_this_machines_devices():
    jobs = Jobs()
    cfg = ConfigModel(load_recipe(None, ["name=here"]), base_path=None, jobs=jobs)
    jobs.wait(120)
    assert cfg.plan.hardware.name.startswith("this machine (")
    assert cfg.plan.fit["hardware"] == cfg.plan.hardware.describe()
