"""The worker: one process per run, which waits for its turn, trains, and records the truth.

``python -m gemma_panel.runs.worker RUN_ID`` (or ``gemma-panel worker RUN_ID``); the queue
starts it, detached. It writes everything to the store through ``StoreSink``, beats a
heartbeat from a thread, stops at the next step when the run is cancelled (or on SIGTERM),
and records the final status itself: succeeded, failed (with the cause in words and the log
tail) or cancelled. If it is killed, the store notices (see ``RunStore.mark_lost``).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable

from . import out_of_memory
from . import statuses as st
from .errors import StaleAttempt
from .liveness import RunLock, own_identity
from .queue import wait_for_turn
from .sink import StoreSink
from .store import RunStore


class Heartbeat(threading.Thread):
    """Writes ``heartbeat_at`` every ``interval`` seconds, on its own connection, and
    notices when the run is no longer this worker's (resumed as a new attempt, deleted).

    A run taken for lost while this worker lived (another host judged it by silence) and
    not resumed since is still this worker's: its heartbeat makes it ``running`` again.
    """

    def __init__(self, store: RunStore, run_id: str, attempt: int, interval: float):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.store, self.run_id, self.attempt, self.interval = store, run_id, attempt, interval
        self.superseded = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.superseded = not self.beat()
            except Exception as exc:  # noqa: BLE001 - a locked store must not stop training
                print(f"heartbeat: {exc}", file=sys.stderr, flush=True)
        self.store.close()

    def beat(self) -> bool:
        """One heartbeat; False when the run is no longer this attempt's."""
        return self.store.beat(self.run_id, self.attempt)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


class StopSignal:
    """``should_stop`` for the trainer: a cancel flag in the store, SIGTERM, or a lost claim.

    The store is read at most every ``every`` seconds (a primary-key lookup, ~20 µs), so a
    cancel takes effect at the first step that ends after it.
    """

    def __init__(self, store: RunStore, run_id: str, heartbeat: Heartbeat, every: float = 0.2):
        self.store, self.run_id, self.heartbeat, self.every = store, run_id, heartbeat, every
        self.reason: str | None = None
        self._checked = 0.0

    def terminate(self, signum, frame) -> None:
        self.reason = f"stopped by signal {signal.Signals(signum).name}"

    def __call__(self) -> bool:
        if self.reason:
            return True
        if self.heartbeat.superseded:
            self.reason = "superseded"
        elif time.monotonic() - self._checked >= self.every:
            self._checked = time.monotonic()
            if self.store.cancel_requested(self.run_id):
                self.reason = "cancelled"
        return self.reason is not None


def load_trainer(entry_point: str) -> Callable:
    """``"package.module:function"`` -> the function (the run's ``trainer`` column)."""
    module, _, name = entry_point.partition(":")
    return getattr(importlib.import_module(module), name or "train")


def _failure(exc: BaseException, recipe=None) -> str:
    """The cause of a failure in words, with what to do next where we know it (for memory
    exhaustion, the plan's remedies for ``recipe`` on this machine)."""
    from gemma_panel.errors import as_user_error

    name = type(exc).__name__
    if out_of_memory.is_out_of_memory(exc):
        first = (str(exc).splitlines() or [""])[0][:200]
        return out_of_memory.message(f"{name}: {first}" if first else name,
                                     out_of_memory.remedies_for(recipe) if recipe else
                                     out_of_memory.FALLBACK_REMEDIES)
    error = as_user_error(exc)
    if error is not None:
        return str(error)
    return f"the worker crashed ({name}: {exc}); the log tail shows where"


def run_worker(run_id: str, store: RunStore | None = None) -> int:
    """Wait for the run's turn, train it, record how it ended; returns the exit code."""
    store = store or RunStore()
    run = store.get(run_id)
    folder = store.folder(run.id)
    identity = own_identity()
    if not store.register_waiter(run.id, identity):
        now = store.get(run.id)
        why = "has another worker" if now.status == st.QUEUED else f"is {now.status}"
        print(f"worker: run {run.id} {why}; nothing to do", flush=True)
        return 0
    lock = RunLock(folder.path)  # held until this process exits: see liveness.py
    run = wait_for_turn(store, run.id, identity, lock)
    if run is None:
        print(f"worker: run {run_id} left the queue before its turn", flush=True)
        return 0
    print(f"worker {identity[0]}: run {run.id} attempt {run.attempt} started", flush=True)
    try:
        return _train(store, run, folder)
    finally:
        lock.release()


def _train(store: RunStore, run, folder) -> int:
    """Train the run that is now this worker's; record its end unless it was taken over."""
    heartbeat = Heartbeat(store, run.id, run.attempt, store.timings.heartbeat_s)
    heartbeat.start()
    stop = StopSignal(store, run.id, heartbeat)
    previous = signal.signal(signal.SIGTERM, stop.terminate)
    status, message, sinks, recipe = st.FAILED, None, [], None
    try:
        from gemma_panel.config import load_recipe
        from gemma_panel.distribution.multihost import is_primary  # process 0 exports
        from gemma_panel.training.events import MultiSink, StdoutSink  # imports JAX: only now

        recipe = load_recipe(folder.recipe_path)
        train = load_trainer(run.trainer)
        sinks = _mirrored(run, folder)
        resume = run.attempt > 0 or folder.has_checkpoint()
        if resume:
            print(f"resuming from the last checkpoint in {folder.checkpoints}", flush=True)
        baseline = out_of_memory.BaselineSink(folder.path, recipe)
        store_sink = StoreSink(store, run.id, run.attempt)
        try:
            result = train(recipe, folder.path,
                           sink=MultiSink(store_sink, StdoutSink(), baseline, *sinks),
                           should_stop=stop, resume=resume)
        finally:
            store_sink.close()  # every metric is in the store before the status is
        status, message = _outcome(result, stop)
        if status == st.SUCCEEDED and recipe.export.formats and is_primary():
            status, message = _export_listed(store, run, folder, recipe, message)
    except StaleAttempt as exc:  # resumed elsewhere: its writes and saves were refused
        print(f"worker: {exc}", flush=True)
        stop.reason = "superseded"
    except BaseException as exc:  # noqa: BLE001 - every way out is recorded as a status
        traceback.print_exc()
        sys.stdout.flush()
        if isinstance(exc, KeyboardInterrupt):
            status, message = st.CANCELLED, "interrupted (Ctrl-C in the worker's terminal)"
        else:
            status, message = st.FAILED, _failure(exc, recipe)
    finally:
        if sinks and stop.reason != "superseded":  # exports, the log tail: before the status
            from gemma_panel.runs.mirror import finish_mirrors

            status, message = finish_mirrors(sinks, folder, status, message)
        heartbeat.stop()
        signal.signal(signal.SIGTERM, previous)
    if stop.reason == "superseded":
        print(f"worker: run {run.id} attempt {run.attempt} was taken over; not recording",
              flush=True)
        return st.exit_code(st.LOST)
    store.finish(run.id, run.attempt, status, message,
                 folder.log_tail() if status == st.FAILED else None)
    print(f"worker: run {run.id} {status}" + (f": {message}" if message else ""), flush=True)
    return st.exit_code(status)


def _mirrored(run, folder) -> list:
    """For a run with a copy on Cloud Storage: fetch its newest checkpoint if none is here
    (a restarted job's replica goes on from it), and the sink that writes the copy."""
    if not run.remote_dir:
        return []
    from gemma_panel.runs.mirror import MirrorSink, fetch_latest_checkpoint

    fetched = fetch_latest_checkpoint(run.remote_dir, folder.checkpoints)
    if fetched is not None:
        print(f"fetched {fetched.name} from {run.remote_dir}", flush=True)
    print(f"keeping a copy of the run folder in {run.remote_dir}", flush=True)
    return [MirrorSink(run.remote_dir, log=folder.log_path)]


def _export_listed(store: RunStore, run, folder, recipe, message) -> tuple[str, str | None]:
    """The recipe's ``export:`` formats, each verified and recorded as an ``export`` event;
    the run succeeds only if every one did."""
    from gemma_panel.export.listed import export_listed, summary

    def record(outcome):
        store.add_event(run.id, run.attempt, "export", outcome.fmt,
                        {"path": outcome.path, "error": outcome.error})
        print(f"export {outcome.fmt}: " + (f"verified, {outcome.path}" if outcome.ok else
                                           f"FAILED: {outcome.error}"), flush=True)

    outcomes = export_listed(folder.path, recipe, on_done=record)
    said = "; ".join(m for m in (message, summary(outcomes)) if m)
    return (st.SUCCEEDED if all(o.ok for o in outcomes) else st.FAILED), said


def _outcome(result, stop: StopSignal) -> tuple[str, str | None]:
    """The trainer's result -> (status, message). Early stopping is a success."""
    status, step = getattr(result, "status", st.SUCCEEDED), getattr(result, "step", None)
    message = getattr(result, "message", None)
    if status == st.STOPPED_EARLY:
        return st.SUCCEEDED, message or f"stopped early at step {step}"
    if status == st.CANCELLED:
        why = stop.reason if stop.reason and stop.reason != "cancelled" else "cancelled"
        return st.CANCELLED, f"{why} at step {step}; checkpoint saved"
    if status not in (st.SUCCEEDED, st.FAILED):
        return st.FAILED, f"the trainer returned an unknown status {status!r}"
    return status, message


def redirect_output(path) -> None:
    """Send this process's stdout and stderr (Python's and C libraries') to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


# -- the worker process's entry point: python -m gemma_panel.runs.worker RUN_ID ----------------
def work(run_id: str, store_root: str | None = None, foreground: bool = False) -> int:
    """The body of a worker process: output to the run's log (unless ``foreground``), then
    ``run_worker``."""
    store = RunStore(store_root)
    run = store.get(run_id)
    if not foreground:
        log = store.folder(run.id).log_path
        print(f"worker for {run.id}: writing to {log}", file=sys.stderr)
        redirect_output(log)
    return run_worker(run.id, store)


def add_worker_arguments(parser) -> None:
    """The worker's options, on this entry point and on ``gemma-panel worker``."""
    parser.add_argument("run_id")
    parser.add_argument("--store", help="store folder (default: GEMMA_PANEL_HOME)")
    parser.add_argument("--foreground", action="store_true",
                        help="print here instead of to the run's log file")


def main(argv: list[str] | None = None) -> int:
    """``python -m gemma_panel.runs.worker RUN_ID [--store FOLDER] [--foreground]``: what
    the queue starts for each run, with the CLI's error boundary but not the CLI."""
    import argparse

    from gemma_panel.errors import report_user_error

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow's first import
    parser = argparse.ArgumentParser(prog="python -m gemma_panel.runs.worker",
                                     description="Train one run (the queue starts this).")
    add_worker_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return work(args.run_id, args.store, args.foreground)
    except Exception as exc:
        code = report_user_error(exc, os.path.join(args.store, "runs.db") if args.store
                                 else None, prog="gemma-panel worker")
        if code is None:
            raise
        return code


if __name__ == "__main__":
    from gemma_panel.runs.worker import main as worker_main  # the importable copy, not __main__'s

    sys.exit(worker_main())
