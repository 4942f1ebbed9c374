"""The recipe: every setting of a fine-tuning run, typed, with its explanation and default.

A recipe has six sections (model, data, lora, train, eval, export). ``schema`` declares them
(type, default, help text, allowed values, lower bounds), frozen; ``fields`` looks them up by
path (``"train.learning_rate"``); ``loading`` reads YAML, overrides or typed values
(``recipe_from_values``, for the dashboard) and coerces them; ``validation`` checks them;
``rendering`` writes commented YAML and differences.

Example:
    >>> recipe = load_recipe("recipes/quickstart.yaml", ["train.learning_rate=1e-4"])
    >>> recipe.train.learning_rate
    0.0001
"""

from .fields import (
    field_choices,
    field_default,
    field_help,
    field_least,
    iter_fields,
    iter_settings,
    replace_settings,
    schema_field,
)
from .loading import load_recipe, parse_override, recipe_from_values
from .rendering import recipe_diff, recipe_to_yaml
from .schema import (
    LORA_TARGETS,
    SECTIONS,
    DataSection,
    EvalSection,
    ExportSection,
    LoraSection,
    ModelSection,
    Recipe,
    RecipeError,
    TrainSection,
)
from .validation import validate

__all__ = [
    "LORA_TARGETS", "SECTIONS", "DataSection", "EvalSection", "ExportSection", "LoraSection",
    "ModelSection", "Recipe", "RecipeError", "TrainSection", "field_choices",
    "field_default", "field_help", "field_least", "iter_fields",
    "iter_settings", "load_recipe", "parse_override", "recipe_diff",
    "recipe_from_values", "recipe_to_yaml", "replace_settings", "schema_field", "validate",
]
