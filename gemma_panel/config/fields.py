"""The recipe's fields by path (``"train.learning_rate"``): lookups, iteration, changed copies.

Every view of the schema goes through these (the dashboard's widgets and the Data tab's
choices, the YAML comments, validation), so nothing outside ``schema`` repeats a choice,
a default or a bound.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from .schema import SECTIONS, Recipe


def field_help(path: str) -> str:
    """The explanation of a field, e.g. ``field_help("train.learning_rate")``."""
    return schema_field(path).metadata["help"]


def field_choices(path: str) -> tuple | None:
    """The values a field allows (``("line", "paragraph", "chunk")``), or None: any."""
    return schema_field(path).metadata["choices"]


def field_least(path: str) -> float | None:
    """The smallest value ``validate`` accepts for a field, where it is a plain bound."""
    return schema_field(path).metadata["least"]


def field_default(path: str) -> Any:
    """A field's default value (a fresh copy for lists and dicts)."""
    f = schema_field(path)
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def schema_field(path: str) -> dataclasses.Field:
    """The ``dataclasses.Field`` of ``section.name``; KeyError for a path that is none."""
    return _fields_by_path()[path]


@functools.cache
def _fields_by_path() -> dict[str, dataclasses.Field]:
    return {f"{section}.{f.name}": f for section, f, _ in _field_table()}


def iter_fields():
    """Yield (section, dataclasses.Field, type) for every recipe field, in order."""
    yield from _field_table()


@functools.cache
def _field_table() -> tuple:
    """The fields with their types resolved (the annotations are text; resolving is slow)."""
    rows = []
    for section, section_cls in SECTIONS.items():
        hints = typing.get_type_hints(section_cls)
        rows.extend((section, f, hints[f.name]) for f in dataclasses.fields(section_cls))
    return tuple(rows)


def iter_settings(recipe: Recipe):
    """Yield (path, value, type) for every setting, name and description first."""
    yield "name", recipe.name, str
    yield "description", recipe.description, str
    for section, f, hint in iter_fields():
        yield f"{section}.{f.name}", getattr(getattr(recipe, section), f.name), hint


def replace_settings(recipe: Recipe, values: dict[str, Any]) -> Recipe:
    """A copy of ``recipe`` with the settings named by path changed (sections are frozen).

    Nothing is checked here; ``validate`` checks (``recipe_from_values`` builds and checks).
    """
    top = {k: values[k] for k in ("name", "description") if k in values}
    for section in SECTIONS:
        changed = {path.split(".", 1)[1]: value for path, value in values.items()
                   if path.startswith(section + ".")}
        if changed:
            top[section] = dataclasses.replace(getattr(recipe, section), **changed)
    return dataclasses.replace(recipe, **top)
