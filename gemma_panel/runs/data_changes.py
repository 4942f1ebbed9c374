"""Has a run's data changed since it was submitted? Exact resume depends on the answer.

A resumed run continues from the checkpoint's step with the batches the uninterrupted run
would have seen (``training/batches.py``), which holds only if the data files are the ones
it was trained on. ``dataset.json`` in the run folder has each file's SHA-256 from submit
time; a resume whose data differs is refused, naming the file, unless the user accepts the
new data, which is recorded on the run (a ``data_changed`` event holding the new
fingerprint, which later resumes compare against).
"""

from __future__ import annotations

import json

from gemma_panel.data.report import DatasetError

from .folder import RunFolder, dataset_fingerprint
from .store import RunStore

EVENT = "data_changed"


def trained_fingerprint(store: RunStore, run_id: str) -> dict:
    """The fingerprint of the data the run last trained on: the latest accepted change,
    else the one recorded at submit time (``{}`` if there is none)."""
    accepted = store.events(run_id, kinds=[EVENT])
    if accepted:
        return accepted[-1].data["fingerprint"]
    folder = store.folder(run_id)
    try:
        return json.loads(folder.dataset_path.read_text())
    except FileNotFoundError:
        return {}


def current_fingerprint(folder: RunFolder) -> dict:
    from gemma_panel.config import load_recipe

    return dataset_fingerprint(load_recipe(folder.recipe_path))


def data_changes(before: dict, now: dict) -> list[str]:
    """One phrase per data file that is not what it was (files that had no fingerprint,
    such as ``tfds:`` sources and URLs, cannot be compared and are left out)."""
    changes = []
    for key, old in before.items():
        digest = "sha256" if "sha256" in old else "md5" if "md5" in old else None  # md5: gs://
        if digest is None:
            continue
        new = now.get(key, {})
        if digest not in new:
            changes.append(f"{old['path']} is gone")
        elif new[digest] != old[digest]:
            changes.append(f"{old['path']} changed ({old['bytes']:,} bytes then, "
                           f"{new['bytes']:,} now)")
    return changes


def check_data_unchanged(store: RunStore, run, accept: bool = False) -> dict | None:
    """Raise ``DatasetError`` if the run's data changed since its checkpoint was trained,
    unless ``accept``; returns the change to record (``None`` when nothing changed).

    A run without a checkpoint trained nothing yet (say its data failed a check and was
    fixed): it starts from step 0 on the files as they are now, and that is recorded.
    """
    run_id = run.id
    now = current_fingerprint(store.folder(run_id))
    changes = data_changes(trained_fingerprint(store, run_id), now)
    if not changes:
        return None
    if not accept and run.checkpoint_step is not None:
        raise DatasetError(
            f"run {run_id} cannot resume exactly: {'; '.join(changes)} since it was trained "
            "on it. Put the file back as it was, or resume on the new data with "
            f"'gemma-panel runs resume {run_id} --accept-changed-data'.")
    return {"changes": changes, "fingerprint": now}


def record_accepted(store: RunStore, run_id: str, attempt: int, change: dict) -> None:
    store.add_event(run_id, attempt, EVENT, "resumed on changed data: " +
                    "; ".join(change["changes"]), change)
