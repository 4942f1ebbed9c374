"""Which files on the server the dashboard may touch: data roots to read, a recipes folder to write.

A served dashboard can be reached by someone who is not at this machine, so a path typed
into a page is never trusted: it is resolved (``..`` and symlinks followed) and must then lie
inside a data root. The roots are ``GEMMA_PANEL_DATA_ROOTS`` (folders separated by
``os.pathsep``; ``gemma-panel dashboard --data-root DIR`` sets it), by default the working
directory, plus always the uploads folder and the shipped examples. Recipes are written only
into ``GEMMA_PANEL_HOME/recipes``, under a plain file name, and never over an existing file
unless the caller says so.

Example:
    >>> confine_data_path("examples/instruction/unit_conversions.jsonl")   # doctest: +SKIP
    PosixPath('/repo/examples/instruction/unit_conversions.jsonl')
    >>> confine_data_path("/etc/passwd")
    Traceback (most recent call last):
    PathRefused: /etc/passwd: outside the folders this dashboard may read (...) ...
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import gemma_panel
from gemma_panel.errors import UserError
from gemma_panel.home import home_dir

DATA_ROOTS_ENV = "GEMMA_PANEL_DATA_ROOTS"


class PathRefused(UserError, ValueError):
    """A server path a page asked for that lies outside what the dashboard may touch."""


def examples_dir() -> Path:
    return Path(gemma_panel.__file__).resolve().parents[1] / "examples"


def data_roots() -> list[Path]:
    """The folders whose files a page may read, resolved, without repeats."""
    configured = [p for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots = [Path(p).expanduser() for p in configured] or [Path.cwd()]
    roots += [home_dir() / "uploads", examples_dir()]
    out: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved not in out:
            out.append(resolved)
    return out


def confine_data_path(path: str | os.PathLike, roots: list[Path] | None = None) -> Path:
    """``path`` resolved, when it lies inside a data root.

    Raises:
        PathRefused: it resolves to a place outside every root.
    """
    roots = data_roots() if roots is None else [Path(r).resolve() for r in roots]
    resolved = Path(path).expanduser().resolve()  # relative to the working directory
    if any(resolved.is_relative_to(root) for root in roots):
        return resolved
    shown = ", ".join(str(r) for r in roots)
    raise PathRefused(f"{path}: outside the folders this dashboard may read ({shown}); copy "
                      "the file into one of them, or start the dashboard with --data-root "
                      "FOLDER.")


def recipes_dir() -> Path:
    path = home_dir() / "recipes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def recipe_save_path(name: str | None, default_stem: str, overwrite: bool = False) -> Path:
    """Where "Save as" NAME goes: ``GEMMA_PANEL_HOME/recipes/NAME.yaml``, nowhere else.

    Raises:
        PathRefused: NAME holds a folder, or the file exists and ``overwrite`` is false.
    """
    name = (name or "").strip() or default_stem
    if "/" in name or "\\" in name or name.startswith(".") or not re.fullmatch(
            r"[\w.-]+", name):
        raise PathRefused(f"{name}: save under a plain file name (letters, digits, '-', '_', "
                          f"'.'); recipes are kept in {recipes_dir()}.")
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    path = recipes_dir() / f"{stem}.yaml"
    if path.exists() and not overwrite:
        raise PathRefused(f"{path.name} already exists in {path.parent}; tick 'Replace an "
                          "existing file' to overwrite it, or choose another name.")
    return path
