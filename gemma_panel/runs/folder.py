"""The folder of one run: the resolved recipe, the dataset fingerprint, checkpoints, exports,
logs. Everything a run needs to resume lives here, so a run can be resumed from any directory.

    <GEMMA_PANEL_HOME>/runs/<run id>/
        recipe.yaml     the recipe as it ran (paths made absolute, every field written out)
        dataset.json    size, modification time and SHA-256 of each data file at submit time
        checkpoints/    written by the trainer, step-000050/ ... (names from
                        ``gemma_panel.training.checkpoint``); the last whole one is
                        where a resume starts
        exports/        written by the exporters
        logs/worker.log everything the worker printed (stdout, stderr, tracebacks)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.config import Recipe, recipe_to_yaml
from gemma_panel.data.tfds_reader import is_tfds_source
from gemma_panel.files import sha256_of
from gemma_panel.training.checkpoint import whole_checkpoints


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def dataset_path(self) -> Path:
        return self.path / "dataset.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def exports(self) -> Path:
        return self.path / "exports"

    @property
    def log_path(self) -> Path:
        return self.path / "logs" / "worker.log"

    def create(self, recipe: Recipe) -> None:
        """Write the folder of a new run (the recipe and the dataset fingerprint)."""
        for folder in (self.path, self.checkpoints, self.exports, self.log_path.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.recipe_path.write_text(recipe_to_yaml(recipe))
        self.dataset_path.write_text(json.dumps(dataset_fingerprint(recipe), indent=2) + "\n")

    def has_checkpoint(self) -> bool:
        """Whether a whole checkpoint exists (never a partial one a kill left behind)."""
        return bool(whole_checkpoints(self.checkpoints))

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the worker's log ('' if there is none yet)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def resolve_paths(recipe: Recipe, cwd: Path | None = None) -> Recipe:
    """Make the recipe's file paths absolute, so the worker reads the same files from anywhere.

    Data paths are relative to the directory the run was submitted from (``tfds:`` sources
    and URLs are names, not paths, and stay as they are); a model source is
    made absolute only when it names an existing file or folder (otherwise it is a registry
    name or a preset).
    """
    cwd = Path(cwd or os.getcwd())
    data = recipe.to_dict()
    for key in ("train_path", "validation_path"):
        value = data["data"].get(key)
        if value and "://" not in value and not is_tfds_source(value):
            data["data"][key] = str((cwd / value).resolve())
    source = data["model"]["source"]
    if "://" not in source and (cwd / source).exists():
        data["model"]["source"] = str((cwd / source).resolve())
    return Recipe.from_dict(data)


def dataset_fingerprint(recipe: Recipe) -> dict:
    """Size, modification time and SHA-256 of each data file (or why it has none); for a
    gs:// file its size, generation and MD5 as Cloud Storage keeps them."""
    out = {}
    for key in ("train_path", "validation_path"):
        value = getattr(recipe.data, key)
        if not value:
            continue
        if value.startswith("gs://"):  # the object's size, generation and MD5, not read
            from gemma_panel.cloud.gcs import fingerprint

            out[key] = fingerprint(value)
            continue
        path = Path(value)
        if not path.is_file():
            out[key] = {"path": value, "note": "not a local file at submit time"}
            continue
        stat = path.stat()
        out[key] = {"path": value, "bytes": stat.st_size, "mtime": stat.st_mtime,
                    "sha256": sha256_of(path)}
    return out
