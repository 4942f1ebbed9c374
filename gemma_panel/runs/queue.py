"""The queue: runs start in the order they were queued, ``max_parallel`` at a time (default
1), whichever process queued them.

Every queued run has its own worker process from the moment it is queued. The worker waits
for its turn, beating its heartbeat; its turn comes when its run is among the first
``max_parallel - running`` queued runs. That check and the switch to ``running`` happen in
one ``BEGIN IMMEDIATE`` transaction (``RunStore.take_turn``), so two processes never both
take the last free slot.
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

from .data_changes import check_data_unchanged, record_accepted
from .liveness import RunLock
from .records import Run
from .store import DEFAULT_TRAINER, RunStore
from .transitions import Turn


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
           cwd=None, remote_dir: str | None = None) -> Run:
    """Queue a run and start its worker; returns at once (the run is ``queued``).

    Example:
        >>> run = submit(load_recipe("recipes/quickstart.yaml", ["train.max_steps=20"]))
        >>> RunStore().get(run.id).status
        'queued'
    """
    store = store or RunStore()
    run = store.create_run(recipe, trainer=trainer, cwd=cwd, remote_dir=remote_dir)
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
        if run.status.resumable and not run.remote else None
    run = store.requeue(run.id)
    if change:
        record_accepted(store, run.id, run.attempt, change)
    spawn_worker(store, run.id)
    return run


def cancel(run_id: str, store: RunStore | None = None) -> Run:
    """Cancel from any process: queued runs at once, running ones at their next step; a
    Vertex AI job's run by cancelling the job (``remote.cancel_job``)."""
    store = store or RunStore()
    run = store.get(run_id)
    if run.remote:
        from .remote import cancel_job

        return cancel_job(store, run)
    return store.request_cancel(run.id)


def recover(store: RunStore | None = None) -> list[str]:
    """Record lost runs, and give every queued run whose worker died a new one.

    Called by waiting workers and by ``gemma-panel runs list``; after a reboot the first
    call restarts the queue. Returns the ids of the runs that got a new worker.
    """
    store = store or RunStore()
    store.mark_lost()
    orphans = store.reclaim_orphans()
    for run_id in orphans:
        spawn_worker(store, run_id)
    return orphans


def wait_for_turn(store: RunStore, run_id: str, identity: tuple, lock: RunLock) -> Run | None:
    """Block until this run may train, then mark it ``running`` (returns it); None if it was
    cancelled, deleted or taken by another worker meanwhile.

    Its turn needs a free slot and the run lock: a worker of an earlier attempt that is
    still alive (a run taken for lost, then resumed) keeps the lock until it has stopped,
    so two attempts never train on one folder at once.
    """
    last_recover, said = 0.0, False
    while True:
        if time.time() - last_recover > store.timings.heartbeat_s:
            recover(store)  # frees slots held by dead workers, revives orphaned waiters
            last_recover = time.time()
        turn = store.take_turn(run_id, identity, lock.acquire)
        if turn == Turn.STARTED:
            return store.get(run_id)
        if turn == Turn.GONE:
            lock.release()
            return None
        if turn == Turn.LOCKED and not said:
            print(f"worker: waiting for the earlier worker of run {run_id} to stop "
                  f"(it holds {lock.path})", flush=True)
            said = True
        time.sleep(store.timings.poll_s)


def position(store: RunStore, run_id: str) -> int | None:
    """1 for the next run to start, 2 for the one after, ...; None if not queued."""
    return store.queue_position(run_id)
