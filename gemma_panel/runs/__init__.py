"""Runs: one store for every front end, training in worker processes, honest statuses.

    store = RunStore()                         # SQLite (WAL) + a folder per run
    run = submit(recipe, store)                # queued; its worker process starts now
    store.metrics(run.id, since=cursor)        # history, then only what is new
    cancel(run.id); resume(run.id)             # from any process
    store.rename(run.id, "..."); store.set_tags(run.id, ["baseline"])
    delete_run(run.id, store, cancel=True)     # a running run is cancelled first
    compare_runs(store, [a, b], x="tokens")    # curves, table, settings, samples

See docs/runs.md.
"""

from . import statuses
from .compare import Comparison, compare_runs, curves
from .errors import RunNotFound, RunStateError, StaleAttempt
from .liveness import Timings
from .manage import delete_run
from .queue import cancel, recover, resume, spawn_worker, submit
from .records import Event, MetricPoint, Run, Sample
from .sink import StoreSink
from .store import DEFAULT_TRAINER, RunStore

__all__ = [
    "DEFAULT_TRAINER",
    "Comparison",
    "Event",
    "MetricPoint",
    "Run",
    "RunNotFound",
    "RunStateError",
    "RunStore",
    "Sample",
    "StaleAttempt",
    "StoreSink",
    "Timings",
    "cancel",
    "compare_runs",
    "curves",
    "delete_run",
    "recover",
    "resume",
    "spawn_worker",
    "statuses",
    "submit",
]
