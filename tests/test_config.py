"""The recipe package: frozen sections, and recipes built from typed values."""

from __future__ import annotations

import dataclasses

import pytest

from gemma_panel.config import SECTIONS, Recipe, load_recipe, replace_settings


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
