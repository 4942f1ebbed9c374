"""A recipe as commented YAML, and the fields in which two recipes differ."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml

from .fields import iter_fields
from .schema import Recipe


def recipe_to_yaml(recipe: Recipe, comments: bool = True) -> str:
    """YAML for a recipe, each field preceded by its explanation as a comment."""
    def scalar(value) -> str:
        return yaml.safe_dump(value, width=10**6).strip().removesuffix("...").strip()

    lines = [f"name: {scalar(recipe.name)}"]
    if recipe.description:
        lines.append(f"description: {scalar(recipe.description)}")
    current = None
    for section, f, _ in iter_fields():
        if section != current:
            lines.append(f"\n{section}:")
            current = section
        if comments:
            for chunk in textwrap.wrap(f.metadata["help"], 92):
                lines.append(f"  # {chunk}")
        value = yaml.safe_dump({f.name: getattr(getattr(recipe, section), f.name)},
                               default_flow_style=True, width=10**6).strip()
        lines.append(f"  {value[1:-1]}")
    return "\n".join(lines) + "\n"


def recipe_diff(a: Recipe, b: Recipe) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ: ``{"train.learning_rate": (2e-4, 1e-4)}``."""
    out = {}
    for section, f, _ in iter_fields():
        va, vb = getattr(getattr(a, section), f.name), getattr(getattr(b, section), f.name)
        if va != vb:
            out[f"{section}.{f.name}"] = (va, vb)
    return out
