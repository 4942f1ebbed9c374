"""`preflight`: the recipe's data checked by the same preparation its run makes."""

from __future__ import annotations

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.data import DatasetError, prepare_dataset
from gemma_panel.data.preflight import preflight, prepare_recipe_data
from tests.ui.conftest import EXAMPLES, TOPICS


def test_the_wrong_template_fails_preparation_and_names_the_fix():
    # The quickstart's chat template on a classification file: every row lacks a response.
    with pytest.raises(DatasetError) as caught:
        prepare_dataset(TOPICS, template="gemma")
    assert caught.value.report.has("template_mismatch")
    assert caught.value.report.rows_usable == 0
    recipe = load_recipe("recipes/quickstart.yaml", [f"data.train_path={TOPICS}"])
    verdict = preflight(recipe)
    assert not verdict.ok and not verdict.ready
    assert verdict.fix == {"data.template": "classification"}
    assert "topics.csv is classification data" in verdict.message
    assert "set data.template to classification" in verdict.message
    fixed = load_recipe("recipes/quickstart.yaml", [f"data.train_path={TOPICS}",
                                                    "data.template=classification"])
    again = preflight(fixed)
    assert again.ok and again.template == "classification" and again.task == "classification"
    assert again.train_examples + again.validation_examples == 160


def test_a_named_template_is_used_as_named_not_swapped_for_the_tasks():
    # Before, the worker turned `classification` into "the task's default" silently.
    unit = EXAMPLES / "instruction" / "unit_conversions.jsonl"
    recipe = load_recipe(None, [f"data.train_path={unit}", "data.template=classification"])
    verdict = preflight(recipe)
    assert not verdict.ok and verdict.fix == {"data.template": "gemma"}
    with pytest.raises(DatasetError, match="needs a label"):
        prepare_recipe_data(recipe)


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.rglob("*")
                                        if p.suffix in (".csv", ".jsonl", ".txt")))
def test_every_shipped_example_passes_with_the_template_auto_picks(path):
    recipe = load_recipe(None, [f"data.train_path={path}", "data.template=auto",
                                "data.text_mode=paragraph"])
    verdict = preflight(recipe)
    assert verdict.ok, verdict.message
    assert preflight(load_recipe(None, [f"data.train_path={path}",
                                        f"data.template={verdict.template}",
                                        "data.text_mode=paragraph"])).ok
