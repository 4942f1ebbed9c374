"""The Data tab offers the recipe schema's choices and bounds, not copies of them."""

from __future__ import annotations

import pytest

from gemma_panel.config import RecipeError, field_choices, field_default, load_recipe
from gemma_panel.ui.data_model import DataModel


@pytest.mark.parametrize("name, path", [("template", "data.template"),
                                        ("text_mode", "data.text_mode")])
def test_the_data_tab_offers_the_schemas_choices(name, path):
    parameter = DataModel.param[name]
    assert tuple(parameter.objects) == field_choices(path)
    assert parameter.default == field_default(path)


def test_the_data_tab_refuses_the_sequence_lengths_validate_refuses():
    low = DataModel.param["sequence_length"].bounds[0]
    load_recipe(None, [f"data.sequence_length={low}"])
    with pytest.raises(RecipeError, match="data.sequence_length"):
        load_recipe(None, [f"data.sequence_length={low - 1}"])
    with pytest.raises(ValueError):
        DataModel(sequence_length=low - 1)
    assert DataModel().sequence_length == field_default("data.sequence_length")
    assert DataModel().model_source == field_default("model.source")
