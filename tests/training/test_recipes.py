"""Recipes: every shipped YAML loads; errors name the field; YAML round-trips with help."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemma_panel.config import (
    Recipe,
    RecipeError,
    field_help,
    iter_fields,
    load_recipe,
    recipe_diff,
    recipe_to_yaml,
)

RECIPES = sorted(Path(__file__).resolve().parents[2].joinpath("recipes").glob("*.yaml"))


def test_there_are_recipes_for_each_use():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "instruction", "classification", "pretraining"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_and_says_how_to_run_it(path):
    recipe = load_recipe(path)
    assert Path(recipe.data.train_path).exists(), recipe.data.train_path
    head = path.read_text().split("\n\n")[0]
    assert head.startswith("#") and f"gemma-panel run recipes/{path.name}" in head
    assert "notebook" in head.lower() and "dashboard" in head.lower()


def test_every_field_is_explained():
    for section, f, _ in iter_fields():
        assert len(f.metadata["help"]) > 30, f"{section}.{f.name} needs a real explanation"
    assert "LoRA" in field_help("lora.rank")


def test_yaml_round_trip_keeps_every_value(tmp_path):
    recipe = load_recipe(RECIPES[0], ["train.learning_rate=1e-4", "lora.rank=16"])
    path = tmp_path / "again.yaml"
    path.write_text(recipe_to_yaml(recipe))
    assert load_recipe(path) == recipe
    assert "# LoRA rank r." in path.read_text()


def test_overrides_are_typed():
    recipe = load_recipe(None, ["train.learning_rate=1e-4", "train.max_steps=70",
                                "eval.early_stopping_patience=null", "lora.target_layers=[query]"])
    assert recipe.train.learning_rate == pytest.approx(1e-4)
    assert recipe.train.max_steps == 70 and recipe.eval.early_stopping_patience is None
    assert recipe.lora.target_layers == ["query"]


@pytest.mark.parametrize("overrides, field", [
    (["train.batch_size=0"], "train.batch_size"),
    (["lora.rnk=4"], "lora.rnk: unknown setting (did you mean 'rank'?)"),
    (["train.max_steps=5", "train.warmup_steps=5"], "train.warmup_steps"),
    (["train.learning_rate=abc"], "train.learning_rate: expected float"),
    (["train.schedule=exponential"], "train.schedule"),
    (["lora.target_layers=[attention]"], "lora.target_layers"),
    (["data.validation_fraction=1.5"], "data.validation_fraction"),
    (["model.dtype=float8"], "model.dtype"),
    (["trian.epochs=2"], "trian.epochs"),
])
def test_bad_settings_name_the_field(overrides, field):
    with pytest.raises(RecipeError) as info:
        load_recipe(None, overrides)
    assert any(p.startswith(field.split(":")[0]) for p in info.value.problems)
    assert field in str(info.value)


def test_diff_names_changed_fields():
    a, b = Recipe(), load_recipe(None, ["lora.rank=4", "train.epochs=3"])
    assert set(recipe_diff(a, b)) == {"lora.rank", "train.epochs"}


@pytest.mark.parametrize("section, name, value, words", [
    (None, "name", 123, "name: expected str, got 123"),
    (None, "name", None, "name: must be set"),
    (None, "description", ["a"], "description: expected str"),
    ("data", "sequence_length", "256", "data.sequence_length: expected int, got '256'"),
    ("train", "learning_rate", True, "train.learning_rate: expected float, got True"),
    ("lora", "target_layers", ["query", 7], "lora.target_layers: every item must be text"),
    ("data", "columns", {"prompt": 3}, "data.columns: must map names to text"),
    ("eval", "max_examples", 1.5, "eval.max_examples: expected int"),
])
def test_validate_checks_the_type_of_every_field(section, name, value, words):
    """A recipe built in code (as the dashboard does) is type-checked by validate too,
    instead of passing it and crashing the run later."""
    from gemma_panel.config import replace_settings, validate

    recipe = replace_settings(Recipe(), {f"{section}.{name}" if section else name: value})
    with pytest.raises(RecipeError) as info:
        validate(recipe)
    assert words in str(info.value)


def test_a_number_given_for_a_name_is_read_as_text(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: 123\n")
    assert load_recipe(path).name == "123"
    assert load_recipe(None, ["name=2024"]).name == "2024"


def test_a_recipe_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "cp1252.yaml"
    path.write_bytes("description: “smart quotes”\n".encode("cp1252"))
    with pytest.raises(RecipeError, match=r"not UTF-8 text \(byte 0x93 at offset 13\)"):
        load_recipe(path)
