"""What a user keeps about runs: a name, notes and tags; the list filtered by them; deletion.

``RunStore`` inherits ``RunLabels``' methods. A run's id (and its folder) never changes: a
rename changes only the name shown. Tags are short labels (``baseline``, ``lr-sweep``),
kept sorted and each once. ``delete_run`` is deletion as a user asks for it: a queued or
running run is refused, or cancelled first (through ``queue.cancel``, as any cancel) and
deleted once it has stopped; only the run's own folder, ``<home>/runs/<id>/``, is removed.

Example:
    >>> store.rename(run.id, "rank 16, lr 2e-4")
    >>> store.set_tags(run.id, ["baseline", "sweep"])
    >>> store.list_runs(tag="sweep", model="gemma3")
    >>> delete_run(run.id, store, cancel=True)
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from .errors import LabelError, RunStateError
from .records import Run

MAX_NAME = 100
MAX_NOTES = 10_000
_TAG = re.compile(r"^[\w.:+-]{1,40}$")
CANCEL_WAIT_S = 300.0  # how long delete_run waits for a cancelled run to stop


def clean_name(name: str) -> str:
    text = " ".join(str(name).split())
    if not text or len(text) > MAX_NAME:
        raise LabelError(f"a run's name must be 1 to {MAX_NAME} characters on one line; "
                         "type another name")
    return text


def clean_tags(tags) -> list[str]:
    """Tags as stored: stripped, each once, sorted; a string is split at commas and spaces."""
    if isinstance(tags, str):
        tags = re.split(r"[,\s]+", tags)
    found = sorted({str(t).strip() for t in tags if str(t).strip()})
    bad = [t for t in found if not _TAG.match(t)]
    if bad:
        raise LabelError(f"tag {bad[0]!r}: use 1 to 40 letters, digits or - _ . : + "
                         "(no spaces), e.g. 'lr-sweep'")
    return found


def run_filter(status: str | None = None, tag: str | None = None,
               model: str | None = None) -> tuple[str, list]:
    """The ``WHERE`` clause (or '') and its arguments for ``list_runs``' filters: ``status``
    exactly, ``tag`` among the run's tags, ``model`` anywhere in its model source (any case)."""
    clauses, args = [], []
    if status:
        clauses.append("status = ?")
        args.append(str(status))
    if tag:
        clauses.append("EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = ?)")
        args.append(tag.strip())
    if model:
        clauses.append("instr(lower(COALESCE(model, '')), lower(?)) > 0")
        args.append(model.strip())
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


class RunLabels:
    """``RunStore``'s name, notes and tags; the store supplies ``write``, ``conn`` and ``get``."""

    def rename(self, run_id: str, name: str) -> Run:
        return self._set_label(run_id, name=clean_name(name))

    def set_notes(self, run_id: str, notes: str) -> Run:
        notes = str(notes).strip()
        if len(notes) > MAX_NOTES:
            raise LabelError(f"notes: at most {MAX_NOTES:,} characters (these have "
                             f"{len(notes):,}); shorten them")
        return self._set_label(run_id, notes=notes)

    def set_tags(self, run_id: str, tags) -> Run:
        return self._set_label(run_id, tags=json.dumps(clean_tags(tags)))

    def add_tags(self, run_id: str, tags) -> Run:
        run = self.get(run_id)
        return self.set_tags(run.id, [*run.tags, *clean_tags(tags)])

    def remove_tags(self, run_id: str, tags) -> Run:
        run = self.get(run_id)
        gone = set(clean_tags(tags))
        return self.set_tags(run.id, [t for t in run.tags if t not in gone])

    def tags_in_use(self) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT value FROM runs, json_each(runs.tags) "
                                 "ORDER BY value").fetchall()
        return [r[0] for r in rows]

    def models_in_use(self) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT model FROM runs WHERE model IS NOT NULL "
                                 "ORDER BY model").fetchall()
        return [r[0] for r in rows]

    def _set_label(self, run_id: str, **fields) -> Run:
        run = self.get(run_id)
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.write() as conn:
            conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run.id))
        return self.get(run.id)


def own_folder(runs_root: Path, run_id: str) -> Path | None:
    """The run's own folder, ``runs_root/<id>``, if it is one that may be removed: a real
    folder (not a link) directly under ``runs_root``; else None."""
    if not run_id or Path(run_id).name != run_id or run_id in (".", ".."):
        return None
    folder = Path(runs_root) / run_id
    if folder.is_symlink() or not folder.is_dir():
        return None
    if folder.resolve().parent != Path(runs_root).resolve():
        return None
    return folder


def remove_own_folder(runs_root: Path, run: Run) -> None:
    """Remove ``runs_root/<id>`` and nothing else: never the recorded ``run_dir`` when it
    points elsewhere, never what a link inside the folder points to (``rmtree`` removes
    the link itself)."""
    folder = own_folder(runs_root, run.id)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def delete_run(run_id: str, store, *, cancel: bool = False,
               wait_s: float = CANCEL_WAIT_S) -> Run:
    """Delete a run as a user asks: its rows and its folder. Returns the run as it was.

    Args:
        cancel: a queued or running run is cancelled first (a running one stops at its
            next step), then deleted once it has stopped; without it such a run is refused.
        wait_s: how long to wait for a cancelled run to stop before giving up.

    Raises:
        RunStateError: the run is queued or running and ``cancel`` is off, or it had not
            stopped ``wait_s`` seconds after its cancel.
    """
    run = store.get(run_id)
    if run.status.active:
        if not cancel:
            raise RunStateError(f"run {run.id} is {run.status}; cancel it first "
                                f"('gemma-panel runs cancel {run.id}'), or delete it with "
                                "--cancel to cancel and then delete it")
        run = _cancel_and_wait(store, run, wait_s)
    store.delete(run.id)
    return run


def _cancel_and_wait(store, run: Run, wait_s: float) -> Run:
    from .queue import cancel

    run = cancel(run.id, store)
    deadline = time.monotonic() + wait_s
    while run.status.active and time.monotonic() < deadline:
        time.sleep(0.2)
        if run.remote:
            from .remote import poll

            poll(store, [run.id])
        run = store.get(run.id)
    if run.status.active:
        raise RunStateError(f"run {run.id} was asked to cancel but is still {run.status} "
                            f"after {wait_s:.0f} s; delete it again once it has stopped "
                            f"('gemma-panel runs show {run.id}')")
    return run


__all__ = ["RunLabels", "clean_name", "clean_tags", "delete_run", "own_folder",
           "remove_own_folder", "run_filter"]
