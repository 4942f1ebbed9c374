"""The Configure tab for a newcomer, without a browser: the first fields from one tuple, the
rest grouped under Advanced and searchable, changed fields marked, reset one and all."""

from __future__ import annotations

import pytest

from gemma_panel.config import Recipe, field_default
from gemma_panel.ui.config_fields import (
    BASIC_FIELDS,
    advanced_fields,
    all_paths,
    defaults,
    groups,
    search_note,
)
from gemma_panel.ui.config_model import ConfigModel


@pytest.fixture
def cfg():
    """A recipe at every schema default (no recipe file behind it)."""
    return ConfigModel(Recipe())


def test_every_field_is_either_basic_or_in_one_advanced_group():
    advanced = [p for paths in groups().values() for p in paths]
    assert sorted([*BASIC_FIELDS, *advanced]) == sorted(all_paths())
    assert len(set(advanced)) == len(advanced) and not set(advanced) & set(BASIC_FIELDS)
    assert groups()["run"] == ["name", "description"]
    assert "train.learning_rate" not in groups()["train"]
    assert "train.weight_decay" in groups()["train"]


def test_a_changed_field_is_marked_until_it_holds_its_default_again(cfg):
    assert cfg.changed == []
    cfg.set("lora.rank", 16)
    cfg.set("train.max_steps", "30")  # an optional field, typed as text
    assert cfg.changed == ["lora.rank", "train.max_steps"]  # in the tab's order
    cfg.set("lora.rank", 8)  # the default, typed by hand
    assert cfg.changed == ["train.max_steps"]
    assert ConfigModel().changed  # the quickstart recipe sets fields away from the defaults
    with pytest.raises(TypeError, match="Constant parameter 'changed'"):
        cfg.changed = []  # the view model's output: no view writes it


def test_reset_one_restores_the_schema_default_and_leaves_the_others(cfg):
    cfg.set("train.weight_decay", 0.05)
    cfg.set("lora.rank", 16)
    cfg.reset("train.weight_decay")
    assert cfg.settings["train.weight_decay"] == field_default("train.weight_decay") == 0.01
    assert cfg.changed == ["lora.rank"] and cfg.errors == []
    assert cfg.recipe().train.weight_decay == 0.01 and cfg.recipe().lora.rank == 16


def test_reset_all_restores_every_schema_default():
    cfg = ConfigModel()  # the quickstart: several fields away from the defaults
    cfg.set("model.source", "/tmp/some.gguf")
    cfg.set("eval.sample_prompts", "Convert 1 km to miles.")
    assert len(cfg.changed) > 5
    cfg.reset_all()
    assert cfg.changed == [] and cfg.settings == defaults()
    assert cfg.recipe().to_dict() == Recipe().to_dict()
    assert cfg.model_choice == "gemma3-270m"  # the picker follows the reset source
    assert cfg.message.startswith("Reset ") and cfg.errors == []


def test_search_finds_advanced_fields_by_name_and_by_help_text(cfg):
    everything = advanced_fields()
    assert cfg.found == everything and len(everything) == len(all_paths()) - len(BASIC_FIELDS)
    cfg.search = "gradient_accumulation"  # a field's name
    assert cfg.found == ["train.gradient_accumulation"]
    cfg.search = "DECOUPLED"  # only in weight_decay's help text, any case
    assert cfg.found == ["train.weight_decay"]
    cfg.search = "weight decay"  # words, "_" read as a space
    assert "train.weight_decay" in cfg.found
    cfg.search = "learning_rate"  # a basic field is always shown, never searched for
    assert "train.learning_rate" not in cfg.found
    cfg.search = "zzz-no-such-word"
    assert cfg.found == [] and "try another word" in search_note(cfg.search, cfg.found)
    cfg.search = ""
    assert cfg.found == everything


def test_the_view_shows_basics_first_and_follows_search_marks_and_resets(cfg):
    from gemma_panel.ui.config_view import ConfigView

    view = ConfigView(model=cfg)
    layout = view.__panel__()
    basics = layout.select(lambda o: "gp-basics" in getattr(o, "css_classes", []))[0]
    rows = [o for o in basics.objects if any(c.startswith("gp-field-") for c in o.css_classes)]
    assert [r.css_classes[0] for r in rows] == [
        "gp-field-" + p.replace(".", "-") for p in BASIC_FIELDS]
    decay_row = layout.select(lambda o: "gp-field-train-weight_decay" in
                              getattr(o, "css_classes", []))[0]
    schedule_row = layout.select(lambda o: "gp-field-train-schedule" in
                                 getattr(o, "css_classes", []))[0]
    assert view.groups["train"].collapsed and decay_row.visible
    view.search.value_input = "decoupled"  # typed into the search box
    assert cfg.search == "decoupled" and decay_row.visible and not schedule_row.visible
    assert not view.groups["train"].collapsed and not view.groups["lora"].visible
    view.widgets["train.weight_decay"].value = 0.05
    mark = layout.select(lambda o: "gp-changed-train-weight_decay" in
                         getattr(o, "css_classes", []))[0]
    reset = layout.select(lambda o: "gp-reset-train-weight_decay" in
                          getattr(o, "css_classes", []))[0]
    assert cfg.changed == ["train.weight_decay"] and mark.visible and reset.visible
    assert not view.reset_all.disabled
    reset.clicks += 1  # as the browser would
    assert cfg.changed == [] and not mark.visible and view.widgets[
        "train.weight_decay"].value == 0.01
    assert view.reset_all.disabled
    view.search.value_input = ""
    assert view.groups["train"].collapsed and view.groups["lora"].visible


def test_a_reset_list_edited_in_place_leaves_the_defaults_alone():
    """reset_all used to hand out the cached defaults' own lists: an in-place edit of the
    reset field (a view appending a layer) changed every later default and reset."""
    cfg = ConfigModel(Recipe())
    cfg.set("lora.target_layers", ["query"])
    cfg.reset_all()
    cfg.settings["lora.target_layers"].append("ffw_linear")
    assert defaults()["lora.target_layers"] == field_default("lora.target_layers")
    again = ConfigModel(Recipe())
    again.set("lora.target_layers", ["query"])
    again.reset_all()
    assert again.settings["lora.target_layers"] == field_default("lora.target_layers")


def test_a_search_keystroke_reads_no_field_table(monkeypatch):
    """The search runs on every key typed: after the first, it walks no schema table (it
    used to look each field up by walking all of them: fields x fields a keystroke)."""
    from gemma_panel.ui import config_fields

    advanced_fields("warm")  # the first search prepares what it reads
    calls = []
    real = config_fields.iter_fields
    monkeypatch.setattr(config_fields, "iter_fields",
                        lambda: calls.append(1) or real())
    for typed in ("l", "le", "lea", "learning rate"):
        found = advanced_fields(typed)
    assert calls == [] and found  # the schedule's fields mention the learning rate
    assert "train.weight_decay" in advanced_fields("decoupled")
