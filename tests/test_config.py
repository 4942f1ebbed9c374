"""The recipe package: frozen sections, and recipes built from typed values."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from gemma_panel.config import (
    SECTIONS,
    Recipe,
    RecipeError,
    iter_settings,
    load_recipe,
    recipe_from_values,
    recipe_to_yaml,
    replace_settings,
)


@pytest.mark.parametrize("section", SECTIONS)
def test_every_section_refuses_assignment(section):
    recipe = Recipe()
    name = dataclasses.fields(SECTIONS[section])[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(getattr(recipe, section), name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(recipe, section, None)


def test_a_recipe_changes_only_into_a_copy():
    recipe = load_recipe(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.name = "other"
    changed = replace_settings(recipe, {"name": "other", "train.learning_rate": 1e-4,
                                        "lora.rank": 4})
    assert (changed.name, changed.train.learning_rate, changed.lora.rank) == ("other", 1e-4, 4)
    assert (recipe.name, recipe.train.learning_rate, recipe.lora.rank) == ("run", 2e-4, 8)
    assert changed.data == recipe.data  # untouched sections are the same values


def _as_override(path: str, value) -> str:
    """``path=value`` as a user types it on the command line (YAML flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"{path}={text.removesuffix('...').strip()}"


EDITED = {  # a value of every kind: text, int given for a float, float, bool, lists, a dict
    "name": "edited", "description": "Typed values from the dashboard",
    "model.dtype": "mixed_bfloat16",
    "data.template": "classification", "data.columns": {"text": "body", "label": None},
    "data.validation_fraction": 0.2, "data.pack": False, "data.missing": "fill:-",
    "lora.rank": 16, "lora.alpha": 32, "lora.target_layers": ["query", "key", "value"],
    "train.learning_rate": 1e-4, "train.epochs": 2, "train.max_steps": 30,
    "train.schedule": "linear", "eval.sample_prompts": ["Convert 1 km to miles."],
    "eval.max_examples": None, "export.formats": ["lora", "gguf"], "export.quantize": "q8_0",
}


def test_typed_values_give_the_recipe_their_overrides_give():
    every = {path: value for path, value, _ in iter_settings(load_recipe(None))} | EDITED
    typed = recipe_from_values(every)
    parsed = load_recipe(None, [_as_override(p, v) for p, v in every.items()])
    assert typed == parsed
    assert recipe_to_yaml(typed) == recipe_to_yaml(parsed)  # 2 and 2.0 compare equal
    assert typed.train.epochs == 2.0 and isinstance(typed.train.epochs, float)
    assert recipe_from_values(EDITED) == load_recipe(
        None, [_as_override(p, v) for p, v in EDITED.items()])  # the rest: defaults


@pytest.mark.parametrize("values", [
    {"train.batch_size": 0},
    {"train.learning_rate": 0.5, "lora.dropout": 1.0},
    {"lora.rnk": 4},
    {"trian.epochs": 2},
    {"epochs": 2},
    {"data.sequence_length": "long"},
    {"data.template": "chat"},
    {"train.max_steps": 2.5, "train.warmup_steps": None},
    {"lora.target_layers": ["query", "mlp"]},
    {"name": None},
], ids=lambda v: ",".join(v))
def test_a_bad_typed_value_is_refused_in_the_words_of_its_override(values):
    with pytest.raises(RecipeError) as typed:
        recipe_from_values(values)
    with pytest.raises(RecipeError) as parsed:
        load_recipe(None, [_as_override(p, v) for p, v in values.items()])
    assert str(typed.value) == str(parsed.value)
    assert typed.value.problems == parsed.value.problems
