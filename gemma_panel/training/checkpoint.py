"""Checkpoints: trainable weights, optimizer state, step, data position, RNG; atomic.

Layout: ``run_dir/checkpoints/step-000050/{state.npz, meta.json}``. A checkpoint is written
into a ``.partial-`` folder and renamed into place, and ``meta.json`` is the last file
written, so a kill at any moment leaves the previous checkpoint as the latest whole one.
The latest two and the best (lowest validation loss) are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

_PREFIX = "step-"


def checkpoints_dir(run_dir: Path) -> Path:
    path = Path(run_dir) / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_checkpoint(run_dir: Path, step: int, trainable, opt_state, meta: dict,
                    keep: int = 2, best_step: int | None = None) -> Path:
    """Write a checkpoint for ``step`` and prune old ones; return its folder."""
    root = checkpoints_dir(run_dir)
    target = root / f"{_PREFIX}{step:06d}"
    partial = Path(tempfile.mkdtemp(dir=root, prefix=".partial-"))
    try:
        leaves = jax.tree.leaves((trainable, opt_state))
        arrays = {f"a{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        with open(partial / "state.npz", "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        (partial / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        if best_step is None or old.name != f"{_PREFIX}{best_step:06d}":
            shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Whole checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.name.startswith(_PREFIX) and (p / "meta.json").is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path, trainable_like, opt_state_like):
    """Read a checkpoint into the structure of the given (template) state."""
    meta = json.loads((Path(path) / "meta.json").read_text())
    with np.load(Path(path) / "state.npz") as data:
        leaves = [data[f"a{i:05d}"] for i in range(len(data.files))]
    treedef = jax.tree.structure((trainable_like, opt_state_like))
    template = jax.tree.leaves((trainable_like, opt_state_like))
    if len(template) != len(leaves) or any(
        np.shape(a) != np.shape(b) for a, b in zip(template, leaves)
    ):
        raise ValueError(f"checkpoint {path} does not match this model and recipe")
    trainable, opt_state = jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])
    return trainable, opt_state, meta
