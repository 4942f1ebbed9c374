"""Every status change of a run, and the worker bookkeeping around it: the one place that
writes ``runs.status`` (``RunStore`` inherits these methods; the queue and the worker call them).

Each change is one conditional ``UPDATE`` in a write transaction: it happens only if the
run's status may become the new one (``statuses.MOVES``, narrowed where the caller needs
less) and only for the attempt the caller names, and its ``status`` event is written in the
same transaction. A refused change writes nothing: the method says so (False, or
``RunStateError`` where a user asked for it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from enum import StrEnum

from . import statuses as st
from .errors import RunStateError
from .liveness import host_name, judged_gone, process_alive, worker_alive
from .out_of_memory import killed_by_oom
from .records import Run


class Turn(StrEnum):
    """What a waiting worker's look at the queue found (see ``take_turn``)."""

    STARTED = "started"  # the run is now running, this worker's
    WAITING = "waiting"  # other runs are ahead of it, or every slot is taken
    LOCKED = "locked"  # its turn, but an earlier attempt's worker still holds the run lock
    GONE = "gone"  # cancelled, deleted or taken by another worker: this worker is done


def insert_event(conn, run_id: str, attempt: int, kind: str, message: str | None = None,
                 data: dict | None = None) -> None:
    conn.execute("INSERT INTO events (run_id, attempt, time, kind, message, data) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 (run_id, attempt, time.time(), kind, message,
                  json.dumps(data, default=str) if data is not None else None))


def move(conn, run_id: str, on_attempt: int, to: st.RunStatus, *,
         only_from: Iterable[st.RunStatus] | None = None, event: str | None = None,
         data: dict | None = None, **fields) -> bool:
    """Set the run's status to ``to`` (and ``fields``) and record its ``status`` event, if
    the run is on ``on_attempt`` and its status may become ``to`` (and is in ``only_from``,
    where given). False, with nothing written, otherwise. A resume sets ``attempt`` too:
    the event is the new attempt's."""
    allowed = [s for s in st.sources(to) if only_from is None or s in only_from]
    if not allowed:
        return False
    sets = ", ".join(f"{name} = ?" for name in ("status", *fields))
    changed = conn.execute(
        f"UPDATE runs SET {sets} WHERE id = ? AND attempt = ? "
        f"AND status IN ({', '.join('?' * len(allowed))})",
        (to, *fields.values(), run_id, on_attempt, *allowed)).rowcount
    if changed:
        insert_event(conn, run_id, fields.get("attempt", on_attempt), "status",
                     event or str(to), data)
    return bool(changed)


class StatusTransitions:
    """``RunStore``'s status changes; the store supplies ``write``, ``conn``, ``get``,
    ``folder``, ``timings`` and ``max_parallel``."""

    # -- what a front end asks for ------------------------------------------------------
    def request_cancel(self, run_id: str) -> Run:
        """Cancel a run: a queued one at once; a running one at its next step (it saves a
        checkpoint first). Finished runs are left as they are. A remote run (a Vertex AI job,
        cancelled by ``runs.cancel``) is only marked: it ends when its job says so."""
        run = self.get(run_id)
        with self.write() as conn:
            if run.remote:
                if conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status "
                                "IN (?, ?)", (run.id, st.QUEUED, st.RUNNING)).rowcount:
                    insert_event(conn, run.id, run.attempt, "cancel_requested", None)
            elif not move(conn, run.id, run.attempt, st.CANCELLED, only_from=[st.QUEUED],
                        ended_at=time.time(), message="cancelled before it started") and \
                    conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ? "
                                 "AND status = ?", (run.id, st.RUNNING)).rowcount:
                insert_event(conn, run.id, run.attempt, "cancel_requested", None)
        return self.get(run.id)

    def cancel_requested(self, run_id: str) -> bool:
        row = self.conn.execute("SELECT cancel_requested FROM runs WHERE id = ?",
                                (run_id,)).fetchone()
        return bool(row and row[0])

    def requeue(self, run_id: str) -> Run:
        """Put a failed, cancelled or lost run back in the queue (a resume; see ``resume``)."""
        run = self.get(run_id)
        if run.remote:
            raise RunStateError(f"run {run.id} is the {run.backend} job {run.job_name}, which "
                                "cannot be resumed from here: submit the recipe again with "
                                "'gemma-panel cloud submit' (a preempted spot job resumes "
                                "by itself)")
        now = time.time()
        with self.write() as conn:
            if not move(conn, run.id, run.attempt, st.QUEUED, event="queued (resume)",
                        queued_at=now, queue_pos=next_queue_pos(conn),
                        attempt=run.attempt + 1, ended_at=None, message=None, log_tail=None,
                        cancel_requested=0, worker_pid=None, worker_start=None,
                        worker_host=None, heartbeat_at=now):
                raise RunStateError(f"run {run.id} is {run.status}; only failed, cancelled and "
                                    "lost runs can be resumed")
        return self.get(run.id)

    def follow_job(self, run_id: str, status: st.RunStatus, message: str | None = None) -> bool:
        """Move a remote run to the status its job is in (``runs.remote.poll``); True if it
        moved. A job first seen ended (it failed while pending, or ran and ended between
        two polls) goes through ``running``, so every move stays one of ``MOVES``."""
        run = self.get(run_id)
        if not run.remote or run.status == status:
            return False
        path = [st.RUNNING, status] if run.status == st.QUEUED and status in (
            st.SUCCEEDED, st.FAILED) else [status]
        now, moved = time.time(), False
        with self.write() as conn:
            for to in path:
                fields, data = ({"started_at": now}, None) if to == st.RUNNING else (
                    {"ended_at": now, "message": message, "cancel_requested": 0},
                    {"message": message} if message else None)
                moved = move(conn, run.id, run.attempt, to, only_from=[st.QUEUED, st.RUNNING],
                             data=data, **fields) or moved
        return moved

    def mark_lost(self) -> list[str]:
        """Record ``lost`` for every running run whose worker is gone; return their ids.

        On the worker's host its run lock (or else its pid) decides, however long its
        heartbeat has been silent; only a worker this host cannot probe (another host) is
        judged by a heartbeat silent for longer than ``timings.lost_after_s``.
        """
        rows = self.conn.execute(
            "SELECT id, attempt, worker_pid, worker_start, worker_host, heartbeat_at "
            "FROM runs WHERE status = ? AND backend = 'local'", (st.RUNNING,)).fetchall()
        now, marked = time.time(), []
        for row in rows:
            alive = worker_alive(self.folder(row["id"]).path, row["worker_pid"],
                                 row["worker_start"], row["worker_host"])
            silent = now - (row["heartbeat_at"] or 0)
            if judged_gone(alive, silent, self.timings) and self._lose(row, silent, now):
                marked.append(row["id"])
        return marked

    def _lose(self, row, silent: float, now: float) -> bool:
        message = (f"the worker (pid {row['worker_pid']} on {row['worker_host']}) stopped "
                   f"without a word {silent:.0f} s after its last heartbeat: killed, out "
                   "of memory, or the machine restarted. Resume it with 'gemma-panel runs "
                   f"resume {row['id']}'; on Linux, 'dmesg | grep -i oom' shows an "
                   "out-of-memory kill.")
        folder = self.folder(row["id"])
        # The kernel's OOM killer (out_of_memory.py): its counters are this host's only.
        oom = killed_by_oom(folder.path) if row["worker_host"] == host_name() else None
        status, message = (st.FAILED, oom) if oom else (st.LOST, message)
        with self.write() as conn:
            return move(conn, row["id"], row["attempt"], status, data={"message": message},
                        ended_at=now, message=message, log_tail=folder.log_tail())

    # -- what the queue and a waiting worker write --------------------------------------
    def reclaim_orphans(self) -> list[str]:
        """Queued runs whose waiting worker died, marked "a worker is on its way" (no pid, a
        fresh heartbeat: other processes leave them alone); the caller starts new workers."""
        now, orphans = time.time(), []
        with self.write() as conn:
            rows = conn.execute("SELECT id, worker_pid, worker_start, worker_host, heartbeat_at "
                                "FROM runs WHERE status = ? AND backend = 'local'", (st.QUEUED,)).fetchall()
            for row in rows:
                alive = process_alive(row["worker_pid"], row["worker_start"], row["worker_host"])
                if judged_gone(alive, now - (row["heartbeat_at"] or 0), self.timings):
                    conn.execute("UPDATE runs SET worker_pid = NULL, worker_start = NULL, "
                                 "worker_host = NULL, heartbeat_at = ? WHERE id = ?",
                                 (now, row["id"]))
                    orphans.append(row["id"])
        return orphans

    def register_waiter(self, run_id: str, identity: tuple) -> bool:
        """Make ``identity`` (pid, start, host) the queued run's worker, unless another live
        worker already is."""
        pid, start, host = identity
        with self.write() as conn:
            row = conn.execute("SELECT status, worker_pid, worker_start, worker_host "
                               "FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row["status"] != st.QUEUED:
                return False
            theirs = (row["worker_pid"], row["worker_start"], row["worker_host"])
            if row["worker_pid"] is not None and theirs != identity and \
                    process_alive(*theirs) is not False:
                return False
            conn.execute("UPDATE runs SET worker_pid = ?, worker_start = ?, worker_host = ?, "
                         "heartbeat_at = ? WHERE id = ?", (pid, start, host, time.time(), run_id))
        return True

    def take_turn(self, run_id: str, identity: tuple, acquire: Callable[[], bool]) -> Turn:
        """One look at the queue by the run's waiting worker ``identity``.

        Its turn has come when the run is among the first ``max_parallel - running`` queued
        runs; then ``acquire()`` (the run lock) decides between STARTED and LOCKED. The check
        and the switch to ``running`` are one ``BEGIN IMMEDIATE`` transaction, so two
        processes never both take the last free slot. Beats the waiter's heartbeat.
        """
        pid, start, host = identity
        now = time.time()
        with self.write() as conn:
            row = conn.execute("SELECT status, worker_pid, attempt FROM runs WHERE id = ?",
                               (run_id,)).fetchone()
            if row is None or row["status"] != st.QUEUED or row["worker_pid"] != pid:
                return Turn.GONE
            turn = Turn.LOCKED if run_id in self._next_up(conn) else Turn.WAITING
            if turn == Turn.LOCKED and acquire() and move(
                    conn, run_id, row["attempt"], st.RUNNING, only_from=[st.QUEUED],
                    data={"pid": pid, "host": host}, started_at=now, heartbeat_at=now,
                    worker_pid=pid, worker_start=start, worker_host=host, cancel_requested=0):
                return Turn.STARTED
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))
        return turn

    def _next_up(self, conn) -> list[str]:
        """The queued runs that may start now: the first ones, as many as slots are free."""
        running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = ? "
                               "AND backend = 'local'", (st.RUNNING,)).fetchone()[0]
        free = max(0, self.max_parallel - running)
        return [r[0] for r in conn.execute(
            "SELECT id FROM runs WHERE status = ? AND backend = 'local' ORDER BY queue_pos "
            "LIMIT ?", (st.QUEUED, free))]

    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run to start, 2 for the one after, ...; None if not queued."""
        rows = self.conn.execute("SELECT id FROM runs WHERE status = ? AND backend = 'local' "
                                 "ORDER BY queue_pos", (st.QUEUED,)).fetchall()
        ids = [r[0] for r in rows]
        return ids.index(run_id) + 1 if run_id in ids else None

    # -- what a training worker writes --------------------------------------------------
    def beat(self, run_id: str, attempt: int) -> bool:
        """The training worker's heartbeat; False when the run is no longer this attempt's
        (resumed as a new one, deleted). A run taken for lost while this worker lived (another
        host judged it by silence) and not resumed since is ``running`` again."""
        with self.write() as conn:
            row = conn.execute("SELECT status, attempt FROM runs WHERE id = ?",
                               (run_id,)).fetchone()
            if row is None or row["attempt"] != attempt or \
                    row["status"] not in (st.RUNNING, st.LOST):
                return False
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (time.time(), run_id))
            move(conn, run_id, attempt, st.RUNNING, only_from=[st.LOST],
                 data={"message": "the worker was alive after all"},
                 ended_at=None, message=None, log_tail=None)
        return True

    def finish(self, run_id: str, attempt: int, status: st.RunStatus,
               message: str | None = None, log_tail: str | None = None) -> bool:
        """Record how the worker's ``attempt`` ended (succeeded, failed or cancelled), if it
        is still the run's current one and the run has not ended otherwise; else False."""
        if status not in (st.SUCCEEDED, st.FAILED, st.CANCELLED):
            raise ValueError(f"a worker's attempt cannot end as {status!r}")
        with self.write() as conn:
            return move(conn, run_id, attempt, status, only_from=[st.RUNNING, st.LOST],
                        data={"message": message}, ended_at=time.time(), message=message,
                        log_tail=log_tail, cancel_requested=0)


def next_queue_pos(conn) -> int:
    """The queue position after the last run's: a new or resumed run queues at the end."""
    return conn.execute("SELECT COALESCE(MAX(queue_pos), 0) + 1 FROM runs").fetchone()[0]
