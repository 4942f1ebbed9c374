"""``RunStore``: every run's state, metrics, samples and events, shared by every front end.

One SQLite database in WAL mode (``<GEMMA_PANEL_HOME>/runs.db``) plus one folder per run
(``<GEMMA_PANEL_HOME>/runs/<id>/``, see ``folder.py``). Any number of processes may open the
store at once: readers never block and only ever see whole transactions; each run has one
writer, its worker. Open a store wherever you need one; it is cheap.

Example:
    >>> store = RunStore()
    >>> run = store.create_run(load_recipe("recipes/quickstart.yaml"))
    >>> points = store.metrics(run.id)                   # the whole history so far
    >>> newer = store.metrics(run.id, since=points[-1].seq if points else 0)
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gemma_panel.config import Recipe, recipe_to_yaml
from gemma_panel.home import home_dir

from . import statuses as st
from .errors import RunNotFound, RunStateError, StaleAttempt
from .folder import RunFolder, resolve_paths
from .liveness import Timings
from .manage import RunLabels, remove_own_folder, run_filter
from .records import Event, MetricPoint, Run, Sample
from .schema import connect
from .transitions import StatusTransitions, insert_event, next_queue_pos

DEFAULT_TRAINER = "gemma_panel.training:train"
ROWS_PER_INSERT = 128  # 7 values a row: under SQLite's oldest limit of 999 per statement
__all__ = ["DEFAULT_TRAINER", "RunNotFound", "RunStateError", "RunStore", "StaleAttempt"]


class RunStore(StatusTransitions, RunLabels):
    """The run store under ``root`` (default: ``GEMMA_PANEL_HOME``).

    Its status changes (cancel, requeue, lost, a worker's start, heartbeat and end) are
    ``StatusTransitions``' methods, in ``transitions.py``; a run's name, notes and tags are
    ``RunLabels``', in ``manage.py``.

    Args:
        root: the folder that holds ``runs.db`` and ``runs/``.
        timings: heartbeat interval and when silence means lost (default: from the
            environment, see ``Timings.from_env``).
    """

    def __init__(self, root: str | Path | None = None, timings: Timings | None = None):
        self.root = Path(root) if root is not None else home_dir()
        self.db_path = self.root / "runs.db"
        self.runs_root = self.root / "runs"
        self.timings = timings or Timings.from_env()
        self._local = threading.local()
        self._local.conn = connect(self.db_path)  # create the schema now: errors surface here

    # -- connections and transactions ---------------------------------------------------
    @property
    def conn(self):
        """This thread's connection (sqlite3 connections are not shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.db_path)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def write(self) -> Iterator:
        """A write transaction that takes the lock up front (no read-then-upgrade deadlock)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator:
        """A read transaction: every query inside sees the same moment."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # -- runs ---------------------------------------------------------------------------
    def folder(self, run_id: str) -> RunFolder:
        return RunFolder(self.runs_root / run_id)

    def create_run(self, recipe: Recipe, *, trainer: str = DEFAULT_TRAINER,
                   cwd: str | Path | None = None, remote_dir: str | None = None) -> Run:
        """Record a new ``queued`` run and write its folder; starts nothing (see ``submit``).

        Args:
            remote_dir: a gs:// folder the worker keeps a copy of the run folder in (default:
                ``train.storage``/RUN_ID when the recipe sets it); see ``runs.mirror``.

        Raises:
            ModelSourceError: ``model.source`` names no model (a missing path, a file that
                is not GGUF, an unknown name); checked without loading anything, so a run
                that cannot start is never queued.
            ExportError: the recipe's ``export:`` section asks for what no export can make.
            StorageAccessError: a gs:// data file's bucket is missing or this identity may
                not read it, or may not write the folder copy's prefix.
        """
        recipe = resolve_paths(recipe, cwd)
        _check_model_source(recipe.model.source)
        _check_cloud_data(recipe, remote_dir or recipe.train.storage)
        if recipe.export.formats or recipe.export.quantize:
            from gemma_panel.export.listed import check_listed  # imports gguf: only if needed

            check_listed(recipe)  # refused now, not after the training
        return self._insert(recipe, trainer=trainer, remote_dir=remote_dir)

    def create_remote_run(self, recipe: Recipe, *, backend: str, job_name: str,
                          remote_dir: str | None) -> Run:
        """Record a ``queued`` run that a job elsewhere trains (``backend`` "vertex": the
        Vertex AI job ``job_name``); no worker here ever takes it. Its status follows the
        job's (``follow_job``), its metrics come from ``remote_dir`` (``runs.mirror``)."""
        return self._insert(recipe, trainer=backend, backend=backend, job_name=job_name,
                            remote_dir=remote_dir)

    def _insert(self, recipe: Recipe, *, trainer: str, backend: str = "local",
                job_name: str | None = None, remote_dir: str | None = None) -> Run:
        slug = re.sub(r"[^a-z0-9]+", "-", recipe.name.lower()).strip("-")[:40] or "run"
        run_id = f"{slug}-{secrets.token_hex(3)}"
        storage = recipe.train.storage
        if remote_dir is None and storage and backend == "local":
            remote_dir = f"{storage.rstrip('/')}/{run_id}"
        folder = self.folder(run_id)
        folder.create(recipe)
        now = time.time()
        with self.write() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, status, created_at, queued_at, queue_pos, trainer,"
                " run_dir, recipe_yaml, heartbeat_at, backend, job_name, remote_dir, model) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, recipe.name, st.QUEUED, now, now, next_queue_pos(conn), trainer,
                 str(folder.path), recipe_to_yaml(recipe, comments=False), now, backend,
                 job_name, remote_dir, recipe.model.source),
            )
            insert_event(conn, run_id, 0, "status", "queued",
                         {"job": job_name} if job_name else None)
        return self.get(run_id)

    def get(self, run_id: str) -> Run:
        """The run with this id, or with this unique id prefix; lost workers noticed first."""
        self.mark_lost()
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            rows = self.conn.execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\'",
                                     (_like_prefix(run_id),)).fetchall()
            if len(rows) != 1:
                found = "no run" if not rows else f"{len(rows)} runs"
                raise RunNotFound(f"{found} with id {run_id!r}; see 'gemma-panel runs list'")
            row = rows[0]
        return Run.from_row(row)

    def list_runs(self, status: str | None = None, *, tag: str | None = None,
                  model: str | None = None) -> list[Run]:
        """All runs, newest first; only those with ``status``, tagged ``tag``, or whose model
        source contains ``model`` (any case), where given."""
        self.mark_lost()
        where, args = run_filter(status, tag, model)
        rows = self.conn.execute(f"SELECT * FROM runs{where} ORDER BY created_at DESC",
                                 args).fetchall()
        return [Run.from_row(r) for r in rows]

    def update_run(self, run_id: str, conn=None, **fields) -> None:
        """Set columns as they are, past the state machine: for tests and repairs only
        (every status change goes through the transition methods, ``transitions.py``)."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql, args = f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id)
        if conn is not None:
            conn.execute(sql, args)
        else:
            with self.write() as c:
                c.execute(sql, args)

    def delete(self, run_id: str) -> None:
        """Remove a run's rows and its own folder (``runs/<id>/``, never a recorded
        ``run_dir`` elsewhere): the only operation that deletes data. A queued or running
        run is refused; ``manage.delete_run`` cancels it first."""
        run = self.get(run_id)
        if run.status.active:
            raise RunStateError(f"run {run.id} is {run.status}; cancel it first "
                                f"('gemma-panel runs cancel {run.id}')")
        with self.write() as conn:
            for table in ("metrics", "samples", "events"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run.id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run.id,))
        remove_own_folder(self.runs_root, run)

    # -- what a worker writes: every write names its attempt, and a stale one is refused -----
    def fence(self, conn, run_id: str, attempt: int) -> None:
        """Raise ``StaleAttempt`` unless ``attempt`` is the run's current one.

        Called inside the write transaction (``BEGIN IMMEDIATE`` holds the write lock), so
        no resume can slip between this check and the write it guards.
        """
        row = conn.execute("SELECT attempt FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row[0] != attempt:
            now = "was deleted" if row is None else f"is on attempt {row[0] + 1}"
            raise StaleAttempt(f"run {run_id} {now}; attempt {attempt + 1} may no longer "
                               "write to it (it was resumed elsewhere)")

    def check_attempt(self, run_id: str, attempt: int) -> None:
        """``fence`` outside a transaction: before a checkpoint is written to the folder."""
        self.fence(self.conn, run_id, attempt)

    def add_metrics(self, run_id: str, attempt: int, step: int, tokens: int,
                    values: dict[str, float], at: float | None = None, conn=None) -> None:
        """All values of one step in one transaction: a reader sees all of them or none."""
        at = time.time() if at is None else at
        self.add_steps(run_id, attempt, [(step, tokens, values, at)], conn)

    def add_steps(self, run_id: str, attempt: int,
                  steps: list[tuple[int, int, dict[str, float], float]], conn=None) -> None:
        """Many steps' ``(step, tokens, values, time)`` in one transaction, in order.

        One fence and a few statements whatever the count (``StoreSink`` flushes ~30 steps
        at once): each statement lets the GIL go and take it back once per row it steps,
        which the training thread pays for, so the rows go in multi-row INSERTs.
        """
        rows = [(run_id, attempt, step, tokens, name, _number(v), at)
                for step, tokens, values, at in steps for name, v in values.items()]
        if not steps:
            return
        with self._in(conn) as c:
            self.fence(c, run_id, attempt)
            for i in range(0, len(rows), ROWS_PER_INSERT):
                chunk = rows[i:i + ROWS_PER_INSERT]
                c.execute("INSERT INTO metrics (run_id, attempt, step, tokens, name, value, "
                          "time) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                          [v for row in chunk for v in row])
            c.execute("UPDATE runs SET step = MAX(step, ?), tokens = MAX(tokens, ?) "
                      "WHERE id = ?", (max(s[0] for s in steps), max(s[1] for s in steps),
                                       run_id))

    def add_samples(self, run_id: str, attempt: int, step: int, samples: list[dict],
                    at: float | None = None, conn=None) -> None:
        at = time.time() if at is None else at
        rows = [(run_id, attempt, step, i, s.get("prompt", ""), s.get("reference"),
                 s.get("base"), s.get("tuned"), at) for i, s in enumerate(samples)]
        with self._in(conn) as c:
            self.fence(c, run_id, attempt)
            c.executemany("INSERT INTO samples (run_id, attempt, step, idx, prompt, reference,"
                          " base, tuned, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def add_event(self, run_id: str, attempt: int, kind: str, message: str | None = None,
                  data: dict | None = None, conn=None) -> None:
        with self._in(conn) as c:
            self.fence(c, run_id, attempt)
            insert_event(c, run_id, attempt, kind, message, data)

    def set_total_steps(self, run_id: str, attempt: int, total: int, conn=None) -> None:
        with self._in(conn) as c:
            self.fence(c, run_id, attempt)
            c.execute("UPDATE runs SET total_steps = ? WHERE id = ?", (total, run_id))

    def record_checkpoint(self, run_id: str, attempt: int, step: int, path: str, best: bool,
                          conn=None) -> None:
        with self._in(conn) as c:
            self.fence(c, run_id, attempt)
            c.execute("UPDATE runs SET checkpoint_step = ?, checkpoint_path = ? WHERE id = ?",
                      (step, path, run_id))
            insert_event(c, run_id, attempt, "checkpoint", path, {"step": step, "best": best})

    def import_remote_chunk(self, run_id: str, chunk: str, rows: list[dict]) -> bool:
        """Add one record chunk of the run's copy on Cloud Storage (``mirror.read_back``) in
        one transaction, once: False when it (or a later one) was imported already."""
        with self.write() as conn:
            row = conn.execute("SELECT attempt, remote_cursor FROM runs WHERE id = ?",
                               (run_id,)).fetchone()
            if row is None or (row["remote_cursor"] or "") >= chunk:
                return False
            attempt = row["attempt"]
            for r in rows:
                if r["kind"] == "metrics":
                    self.add_metrics(run_id, attempt, r["step"], r["tokens"], r["values"],
                                     r["time"], conn=conn)
                elif r["kind"] == "samples":
                    self.add_samples(run_id, attempt, r["step"], r["samples"], r["time"],
                                     conn=conn)
                elif r["kind"] == "checkpoint":
                    self.record_checkpoint(run_id, attempt, r["step"], r["path"], r["best"],
                                           conn=conn)
                elif r["kind"] == "total_steps":
                    self.set_total_steps(run_id, attempt, r["total"], conn=conn)
            conn.execute("UPDATE runs SET remote_cursor = ? WHERE id = ?", (chunk, run_id))
        return True

    @contextmanager
    def _in(self, conn):
        """Inside the caller's transaction if it has one, else in a new one."""
        if conn is not None:
            yield conn
        else:
            with self.write() as c:
                yield c

    # -- what front ends read -----------------------------------------------------------
    def metrics(self, run_id: str, since: int = 0, names: list[str] | None = None,
                limit: int | None = None) -> list[MetricPoint]:
        """Metric rows after cursor ``since`` (a ``seq``; 0: from the start), in order.

        Keep the last row's ``seq`` and pass it next time to get only new points. Rows of a
        resumed run's earlier attempts stay (they happened); ``compare.curves`` keeps, for
        each step, the newest attempt's value.
        """
        query = "SELECT * FROM metrics WHERE run_id = ? AND seq > ?"
        args: list = [run_id, since]
        if names:
            query += f" AND name IN ({', '.join('?' * len(names))})"
            args += list(names)
        query += " ORDER BY seq" + (f" LIMIT {int(limit)}" if limit else "")
        return [MetricPoint(**dict(r)) for r in self.conn.execute(query, args)]

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        """The newest value of every metric name of a run."""
        rows = self.conn.execute(
            "SELECT name, value FROM metrics WHERE seq IN (SELECT MAX(seq) FROM metrics "
            "WHERE run_id = ? GROUP BY name)", (run_id,)).fetchall()
        return {r["name"]: r["value"] for r in rows}

    def samples(self, run_id: str, since: int = 0) -> list[Sample]:
        rows = self.conn.execute("SELECT * FROM samples WHERE run_id = ? AND seq > ? ORDER BY seq",
                                 (run_id, since))
        return [Sample(**dict(r)) for r in rows]

    def events(self, run_id: str, since: int = 0, kinds: list[str] | None = None) -> list[Event]:
        query, args = "SELECT * FROM events WHERE run_id = ? AND seq > ?", [run_id, since]
        if kinds:
            query += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args += list(kinds)
        return [Event.from_row(r) for r in self.conn.execute(query + " ORDER BY seq", args)]

    # -- settings -----------------------------------------------------------------------
    @property
    def max_parallel(self) -> int:
        """How many runs may train at once on this machine (default 1), for every process."""
        row = self.conn.execute("SELECT value FROM settings WHERE key = 'max_parallel'").fetchone()
        return int(row[0]) if row else 1

    def set_max_parallel(self, n: int) -> None:
        if n < 1:
            raise ValueError("max_parallel: at least one run must be allowed to train")
        with self.write() as conn:
            conn.execute("INSERT INTO settings (key, value) VALUES ('max_parallel', ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(n),))


def _check_model_source(source: str) -> None:
    from gemma_panel.models.errors import ModelSourceError
    from gemma_panel.models.loader import resolve_source

    try:
        resolve_source(source)
    except ModelSourceError as exc:
        raise ModelSourceError(f"model.source: {exc}") from exc


def _check_cloud_data(recipe: Recipe, copy_to: str | None) -> None:
    """gs:// data files must be readable by this identity now, and the folder copy's prefix
    writable, not at the worker's start or its first checkpoint."""
    paths = [p for p in (recipe.data.train_path, recipe.data.validation_path) if p]
    writes = [copy_to] if copy_to else []
    if writes or any(p.startswith("gs://") for p in paths):
        from gemma_panel.cloud.gcs import preflight

        preflight(paths, writes=writes)


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _like_prefix(prefix: str) -> str:
    return re.sub(r"([%_\\])", r"\\\1", prefix) + "%"
