"""Which recipe fields the Configure tab shows, in what order, and how it finds them.

Everything comes from the recipe schema (``gemma_panel.config``): types, defaults, choices
and help texts. This module adds only the layout the dashboard gives them: the few fields a
newcomer decides first (``BASIC_FIELDS``, the one place that list lives), every other field
grouped by recipe section ("Advanced"), a search over field names and help texts, and which
fields differ from the schema's defaults. No Panel here: the view model and its tests use it.

Example:
    >>> advanced_fields("decoupled")
    ['train.weight_decay']
    >>> changed_fields({**defaults(), "lora.rank": 16})
    ['lora.rank']
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from gemma_panel.config import (
    SECTIONS,
    Recipe,
    field_choices,
    field_default,
    field_help,
    iter_fields,
)

# The fields a newcomer decides first, in the order the tab shows them.
BASIC_FIELDS = ("model.source", "data.train_path", "data.template", "train.epochs",
                "train.max_steps", "train.learning_rate", "lora.rank",
                "data.sequence_length")
TOP_FIELDS = {"name": "A short name for the run; run ids start with it.",
              "description": "One line saying what this run is for."}
GROUP_TITLES = {"run": "Run", "model": "Model", "data": "Data", "lora": "LoRA adapters",
                "train": "Training", "eval": "Evaluation and samples", "export": "Export",
                "distribution": "Devices and distribution", "memory": "Memory"}


def field_paths() -> list[str]:
    """Every recipe field as ``section.name``, in the schema's order."""
    return list(_hints())


@functools.cache
def _hints() -> dict[str, Any]:
    """Field path -> its type hint, read from the schema once (the table never changes)."""
    return {f"{section}.{f.name}": hint for section, f, hint in iter_fields()}


def all_paths() -> list[str]:
    """The run's name and description, then every recipe field."""
    return [*TOP_FIELDS, *field_paths()]


def field_info(path: str) -> dict[str, Any]:
    """What a view needs to draw a field: type, choices, default, optional, help."""
    if path in TOP_FIELDS:
        return {"path": path, "type": str, "choices": None, "optional": False,
                "default": getattr(Recipe(), path), "help": TOP_FIELDS[path]}
    hint = _hints()[path]  # KeyError: not a field
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    base = args[0] if args else hint
    base = getattr(base, "__origin__", base)
    return {"path": path, "type": base, "choices": field_choices(path),
            "optional": type(None) in getattr(hint, "__args__", ()),
            "default": field_default(path), "help": field_help(path)}


def defaults() -> dict[str, Any]:
    """Field path -> the schema's default, for every field of ``all_paths``: a deep copy, so
    a list the caller (or a reset recipe) later edits in place leaves the defaults alone."""
    return copy.deepcopy(_defaults())


@functools.cache
def _defaults() -> dict[str, Any]:
    return {path: field_info(path)["default"] for path in all_paths()}


def changed_fields(settings: dict[str, Any]) -> list[str]:
    """The fields whose value differs from the schema's default, in the tab's order."""
    base = defaults()
    return [path for path in all_paths() if path in settings and settings[path] != base[path]]


def groups() -> dict[str, list[str]]:
    """The Advanced section: group -> its fields (every field not in ``BASIC_FIELDS``)."""
    return {group: list(paths) for group, paths in _groups().items()}


@functools.cache
def _groups() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {"run": tuple(TOP_FIELDS)}
    for section in SECTIONS:
        out[section] = tuple(p for p in field_paths()
                             if p.startswith(section + ".") and p not in BASIC_FIELDS)
    return {group: paths for group, paths in out.items() if paths}


def matches(path: str, query: str) -> bool:
    """Does every word of ``query`` appear in the field's path, name or help text?

    Case does not matter and ``_`` reads as a space: "learning rate" finds
    ``train.learning_rate``.
    """
    words = query.lower().replace("_", " ").split()
    text = _search_texts()[path]
    return all(word in text for word in words)


@functools.cache
def _search_texts() -> dict[str, str]:
    """What the search reads of each field (path and help text), prepared once: the search
    runs on every key typed."""
    return {path: f"{path} {field_info(path)['help']}".lower().replace("_", " ")
            for path in all_paths()}


def advanced_fields(query: str = "") -> list[str]:
    """The Advanced fields that ``query`` finds (all of them for an empty query)."""
    return [p for paths in _groups().values() for p in paths if matches(p, query)]


def search_note(query: str, found: list[str]) -> str:
    """One line under the search box: how many fields the search shows."""
    total = sum(len(paths) for paths in _groups().values())
    if not query.strip():
        return f"{total} more fields, by section. Type to search their names and help."
    if not found:
        return f"No advanced field mentions {query.strip()!r}; try another word."
    return f"{len(found)} of {total} fields mention {query.strip()!r}."
