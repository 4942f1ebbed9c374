"""Checkpoints: trainable weights, optimizer state, step, data position, RNG; atomic.

Layout: ``run_dir/checkpoints/step-000050/{state.npz, meta.json}``; every name of a
checkpoint folder is made and read here (``checkpoint_name``, ``checkpoint_step``), for the
trainer, the run folder and the exporters alike. A checkpoint is written into a partial folder and renamed into
place (``gemma_panel.files.staged_folder``), and ``meta.json`` is the last file written, so a
kill at any moment leaves the previous checkpoint as the latest whole one. The partials of
killed writers are removed at the next save and at resume. The latest two and the best
(lowest validation loss) are kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from gemma_panel.files import remove_dead_partials, staged_folder

_CHECKPOINT = re.compile(r"^step-([0-9]{6,})$")


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint at ``step``: ``step-000050``."""
    return f"step-{step:06d}"


def checkpoint_step(path: str | os.PathLike) -> int:
    """The step of a checkpoint folder (``.../step-000050`` -> 50)."""
    return int(_CHECKPOINT.match(Path(path).name).group(1))


def whole_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The whole checkpoints in a ``checkpoints/`` folder, oldest first.

    Whole: named ``step-<N>`` (a partial one never is) and holding ``meta.json``, which the
    trainer writes last.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir()
             if _CHECKPOINT.match(p.name) and (p / "meta.json").is_file()]
    return sorted(found, key=checkpoint_step)


def checkpoints_dir(run_dir: Path) -> Path:
    path = Path(run_dir) / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_checkpoint(run_dir: Path, step: int, trainable, opt_state, meta: dict,
                    keep: int = 2, best_step: int | None = None) -> Path:
    """Write a checkpoint for ``step`` and prune old ones; return its folder."""
    import jax  # here, not at the top: the run store reads checkpoint names without JAX

    target = checkpoints_dir(run_dir) / checkpoint_name(step)
    with staged_folder(target, replace=True) as partial:  # sweeps dead writers' partials
        leaves = jax.tree.leaves((trainable, opt_state))
        arrays = {f"a{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        with open(partial / "state.npz", "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        (partial / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=1))
    for old in list_checkpoints(run_dir)[:-keep]:
        if best_step is None or old.name != checkpoint_name(best_step):
            shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Whole checkpoints, oldest first (never a partial one)."""
    return whole_checkpoints(Path(run_dir) / "checkpoints")


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path, trainable_like, opt_state_like):
    """Read a checkpoint into the structure of the given (template) state.

    Partials that killed writers left beside it are removed first (a resume starts here).
    """
    import jax

    remove_dead_partials(Path(path).parent)
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
