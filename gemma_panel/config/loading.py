"""Reading a recipe: YAML, command-line overrides, coercion to each field's type."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .fields import iter_settings, replace_settings
from .schema import SECTIONS, Recipe, RecipeError
from .validation import validate


def _coerce(path: str, raw: Any, hint) -> Any:
    """Convert a value (from YAML or the command line) to the field's type, or explain."""
    allowed = typing.get_args(hint) or (hint,)
    if raw is None:
        if type(None) in allowed:
            return None
        raise RecipeError([f"{path}: must be set (it cannot be null)"])
    base = next(t for t in allowed if t is not type(None))
    base = typing.get_origin(base) or base
    if base is bool and isinstance(raw, bool):
        return raw
    if base is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if base is float and isinstance(raw, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(raw)
        except ValueError:
            pass
    if base is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if base in (str, list, dict) and isinstance(raw, base):
        return raw
    if base is str and isinstance(raw, (int, float)):
        return str(raw)
    raise RecipeError([f"{path}: expected {base.__name__}, got {raw!r}"])


def parse_override(text: str) -> tuple[str, Any]:
    """``train.learning_rate=1e-4`` -> (``"train.learning_rate"``, 0.0001)."""
    if "=" not in text:
        raise RecipeError([f"{text}: an override is SECTION.FIELD=VALUE, e.g. train.epochs=2"])
    key, value = text.split("=", 1)
    parsed = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, str) and parsed.lower() in ("none", "null"):
        parsed = None
    return key.strip(), parsed


def load_recipe(path: str | Path | None = None, overrides: list[str] = ()) -> Recipe:
    """Read a YAML recipe (or start from the defaults), apply overrides, type-check, validate.

    Raises:
        RecipeError: with one message per problem, each naming its field.
    """
    data = _read_yaml(Path(path)) if path is not None else {}
    for text in overrides:
        _put(data, *parse_override(text))
    return _checked(data)


def recipe_from_values(values: Mapping[str, Any]) -> Recipe:
    """A recipe from typed values by field path, checked exactly as ``load_recipe`` checks.

    ``{"train.learning_rate": 1e-4, "name": "x"}`` gives the recipe that the overrides
    ``train.learning_rate=1e-4 name=x`` give, with the same problems in the same words;
    fields not named keep their defaults. Values are taken as they are, not parsed as text
    (the dashboard's widgets hold typed values already).

    Raises:
        RecipeError: with one message per problem, each naming its field.
    """
    data: dict = {}
    for key, value in values.items():
        _put(data, key, value)
    return _checked(data)


def _put(data: dict, key: str, value: Any) -> None:
    """Set ``SECTION.FIELD`` (or ``name``, ``description``) in a recipe mapping."""
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in ("name", "description"):
        data[parts[0]] = value
        return
    if len(parts) != 2 or parts[0] not in SECTIONS:
        sections = ", ".join(SECTIONS)
        raise RecipeError([f"{key}: overrides name SECTION.FIELD, sections: {sections}"])
    section = data.setdefault(parts[0], {}) or {}
    data[parts[0]] = section
    section[parts[1]] = value


def _checked(data: dict) -> Recipe:
    """The recipe of a mapping: known names, each value of its field's type, valid."""
    recipe = _coerced(Recipe.from_dict(data))
    validate(recipe)
    return recipe


def _coerced(recipe: Recipe) -> Recipe:
    """The recipe with every value converted to its field's type, or every reason why not."""
    values, problems = {}, []
    for path, value, hint in iter_settings(recipe):
        try:
            values[path] = _coerce(path, value, hint)
        except RecipeError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RecipeError(problems)
    return replace_settings(recipe, values)


def _read_yaml(path: Path) -> dict:
    """The mapping in a recipe file, or a RecipeError saying why there is none."""
    if not path.is_file():
        raise RecipeError([f"{path}: no such recipe file; see the recipes/ folder"])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        raise RecipeError([f"{path}: not UTF-8 text ({where}); save the recipe as UTF-8"]) \
            from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RecipeError([f"{path}: not valid YAML ({exc})"]) from exc
    if not isinstance(data, dict):
        raise RecipeError([f"{path}: a recipe is a mapping of sections"])
    return data

