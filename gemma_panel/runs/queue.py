"""The queue: runs start in the order they were queued, ``max_parallel`` at a time (default
1), whichever process queued them.

Every queued run has its own worker process from the moment it is queued. The worker waits
for its turn, beating its heartbeat; its turn comes when its run is among the first
``max_parallel - running`` queued runs. That check and the switch to ``running`` happen in
one ``BEGIN IMMEDIATE`` transaction, so two processes never both take the last free slot.
Waiting workers also keep the queue healthy: they record ``lost`` for dead workers' runs
(freeing their slots) and start a new waiting worker for a queued run whose worker died.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import gemma_panel
from gemma_panel.config import Recipe

from . import statuses as st
from .data_changes import check_data_unchanged, record_accepted
from .liveness import RunLock, judged_gone, process_alive
from .records import Run
from .store import DEFAULT_TRAINER, RunStore


def spawn_worker(store: RunStore, run_id: str) -> subprocess.Popen:
    """Start the worker process of a run, detached: its own session, output to the run's log.

    It survives the caller (a CLI that exits, a notebook kernel restart); a thread here reaps
    it if it ends first, so no zombie is left behind in a long-lived caller.
    """
    folder = store.folder(run_id)
    folder.log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "gemma_panel.runs.worker", run_id,
               "--store", str(store.root)]
    # The worker runs in the run's folder; make sure it imports this same gemma_panel even
    # from a checkout that is not installed.
    package_root = str(Path(gemma_panel.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    with folder.log_path.open("ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=folder.path, env=env,
                                start_new_session=True, close_fds=True)
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    return proc


def submit(recipe: Recipe, store: RunStore | None = None, *, trainer: str = DEFAULT_TRAINER,
           cwd=None) -> Run:
    """Queue a run and start its worker; returns at once (the run is ``queued``).

    Example:
        >>> run = submit(load_recipe("recipes/quickstart.yaml", ["train.max_steps=20"]))
        >>> RunStore().get(run.id).status
        'queued'
    """
    store = store or RunStore()
    run = store.create_run(recipe, trainer=trainer, cwd=cwd)
    spawn_worker(store, run.id)
    return run


def resume(run_id: str, store: RunStore | None = None, *,
           accept_changed_data: bool = False) -> Run:
    """Queue a failed, cancelled or lost run again; it continues from its last checkpoint.

    Raises:
        DatasetError: a data file differs from the one the checkpoint was trained on
            (an exact resume would silently train on other data); pass
            ``accept_changed_data=True`` to resume on the new data, recorded on the run.
        RunStateError: the run is queued, running or succeeded.
    """
    store = store or RunStore()
    run = store.get(run_id)
    change = check_data_unchanged(store, run, accept_changed_data) \
        if run.status in st.RESUMABLE else None
    run = store.requeue(run.id)
    if change:
        record_accepted(store, run.id, run.attempt, change)
    spawn_worker(store, run.id)
    return run


def cancel(run_id: str, store: RunStore | None = None) -> Run:
    """Cancel from any process: queued runs at once, running ones at their next step."""
    return (store or RunStore()).request_cancel(run_id)


def _waiter_gone(row, store: RunStore, now: float) -> bool:
    alive = process_alive(row["worker_pid"], row["worker_start"], row["worker_host"])
    return judged_gone(alive, now - (row["heartbeat_at"] or 0), store.timings)


def recover(store: RunStore | None = None) -> list[str]:
    """Record lost runs, and give every queued run whose worker died a new one.

    Called by waiting workers and by ``gemma-panel runs list``; after a reboot the first
    call restarts the queue. Returns the ids of the runs that got a new worker.
    """
    store = store or RunStore()
    store.mark_lost()
    now, orphans = time.time(), []
    with store.write() as conn:
        rows = conn.execute("SELECT id, worker_pid, worker_start, worker_host, heartbeat_at "
                            "FROM runs WHERE status = ?", (st.QUEUED,)).fetchall()
        for row in rows:
            if _waiter_gone(row, store, now):
                # "A worker is on its way": no pid yet, a fresh heartbeat. Other processes
                # running recover() now leave this run alone.
                conn.execute("UPDATE runs SET worker_pid = NULL, worker_start = NULL, "
                             "worker_host = NULL, heartbeat_at = ? WHERE id = ?", (now, row["id"]))
                orphans.append(row["id"])
    for run_id in orphans:
        spawn_worker(store, run_id)
    return orphans


def register_waiter(store: RunStore, run_id: str, identity: tuple) -> bool:
    """Make this process the run's worker, unless another live worker already is."""
    pid, start, host = identity
    with store.write() as conn:
        row = conn.execute("SELECT status, worker_pid, worker_start, worker_host, heartbeat_at "
                           "FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row["status"] != st.QUEUED:
            return False
        mine = (row["worker_pid"], row["worker_start"], row["worker_host"]) == identity
        if row["worker_pid"] is not None and not mine and \
                process_alive(row["worker_pid"], row["worker_start"], row["worker_host"]) \
                is not False:
            return False
        conn.execute("UPDATE runs SET worker_pid = ?, worker_start = ?, worker_host = ?, "
                     "heartbeat_at = ? WHERE id = ?", (pid, start, host, time.time(), run_id))
    return True


def wait_for_turn(store: RunStore, run_id: str, identity: tuple, lock: RunLock) -> Run | None:
    """Block until this run may train, then mark it ``running`` (returns it); None if it was
    cancelled, deleted or taken by another worker meanwhile.

    Its turn needs a free slot and the run lock: a worker of an earlier attempt that is
    still alive (a run taken for lost, then resumed) keeps the lock until it has stopped,
    so two attempts never train on one folder at once.
    """
    pid, start, host = identity
    last_recover, said = 0.0, False
    while True:
        now = time.time()
        if now - last_recover > store.timings.heartbeat_s:
            recover(store)  # frees slots held by dead workers, revives orphaned waiters
            last_recover = now
        with store.write() as conn:
            row = conn.execute("SELECT status, worker_pid, attempt FROM runs WHERE id = ?",
                               (run_id,)).fetchone()
            if row is None or row["status"] != st.QUEUED or row["worker_pid"] != pid:
                lock.release()
                return None
            running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = ?",
                                   (st.RUNNING,)).fetchone()[0]
            free = max(0, store.max_parallel - running)
            first = [r[0] for r in conn.execute(
                "SELECT id FROM runs WHERE status = ? ORDER BY queue_pos LIMIT ?",
                (st.QUEUED, free))]
            if run_id in first and not lock.acquire():
                if not said:
                    print(f"worker: waiting for the earlier worker of run {run_id} to stop "
                          f"(it holds {lock.path})", flush=True)
                    said = True
            elif run_id in first:
                conn.execute(
                    "UPDATE runs SET status = ?, started_at = ?, "
                    "heartbeat_at = ?, worker_pid = ?, worker_start = ?, worker_host = ?, "
                    "cancel_requested = 0 WHERE id = ?",
                    (st.RUNNING, now, now, pid, start, host, run_id))
                store._event(conn, run_id, row["attempt"], "status", "running",
                             {"pid": pid, "host": host})
                break
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))
        time.sleep(store.timings.poll_s)
    return store.get(run_id)


def position(store: RunStore, run_id: str) -> int | None:
    """1 for the next run to start, 2 for the one after, ...; None if not queued."""
    rows = store.conn.execute("SELECT id FROM runs WHERE status = ? ORDER BY queue_pos",
                              (st.QUEUED,)).fetchall()
    ids = [r[0] for r in rows]
    return ids.index(run_id) + 1 if run_id in ids else None
