"""``StoreSink``: the trainer's events, written to the run store as they happen."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from typing import Any

from .errors import StaleAttempt
from .store import RunStore


class StoreSink:
    """An ``EventSink`` that records one run's metrics, samples, checkpoints and log lines.

    The training thread only appends to a list (a microsecond); a writer thread commits
    what has piled up every ``flush_every`` seconds, in one transaction, while the step
    runs on the accelerator or in XLA (which release the GIL). A transaction holds whole
    steps, so readers never see part of a step; ``on_start``, ``on_checkpoint`` and
    ``on_end`` write through at once, so the store never shows a checkpoint whose
    metrics are still on their way. benchmarks/metrics_overhead.py measures the cost.

    Args:
        store: the run store.
        run_id: the run being trained.
        attempt: which try of the run this is (default: the run's current attempt).
        flush_every: the longest a metric waits before readers can see it, in seconds.

    Example:
        >>> sink = StoreSink(store, run.id)
        >>> train(recipe, run.run_dir, sink=MultiSink(sink, StdoutSink()))
        >>> sink.close()
    """

    def __init__(self, store: RunStore, run_id: str, attempt: int | None = None,
                 flush_every: float = 0.25):
        self.store = store
        self.run_id = run_id
        self.attempt = store.get(run_id).attempt if attempt is None else attempt
        self.flush_every = flush_every
        self._pending: list[tuple] = []
        self.stale: StaleAttempt | None = None  # set once the store refused this attempt
        self._lock = threading.Lock()      # guards _pending
        self._writing = threading.Lock()   # one batch at a time, in the order taken
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"store-sink-{run_id}",
                                        daemon=True)
        self._thread.start()

    # -- the EventSink protocol -----------------------------------------------------------
    def on_start(self, info: dict[str, Any]) -> None:
        data = {k: v for k, v in info.items() if k != "recipe"}
        self._put("event", "start", None, data)
        if info.get("total_steps") is not None:
            self._put("total_steps", int(info["total_steps"]))
        self.flush()

    def on_metrics(self, step: int, tokens: int, metrics: dict[str, float]) -> None:
        self._put("metrics", int(step), int(tokens), dict(metrics), time.time())

    def on_samples(self, step: int, samples: list[dict[str, str]]) -> None:
        self._put("samples", int(step), [dict(s) for s in samples], time.time())

    def on_checkpoint_start(self, step: int) -> None:
        """Refuse (``StaleAttempt``) to let a superseded attempt write a checkpoint.

        The check is enough on its own: a resumed attempt takes the run lock before it
        trains, and this process holds it until it exits (see ``liveness``), so no new
        attempt reads or writes ``checkpoints/`` between this check and the save.
        """
        if self.stale is not None:
            raise self.stale
        self.store.check_attempt(self.run_id, self.attempt)

    def on_checkpoint(self, step: int, path: str, best: bool) -> None:
        self._put("checkpoint", int(step), str(path), bool(best))
        self.flush()

    def on_log(self, message: str) -> None:
        self._put("event", "log", message, None)

    def on_end(self, status: str, message: str | None) -> None:
        # The worker records the run's status once train() has returned; this is the
        # trainer's own account, kept as an event.
        self._put("event", "end", message, {"status": status, "peak_rss_mb": peak_rss_mb()})
        self.flush()

    # -- writing ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Commit everything received so far (in the calling thread); raises
        ``StaleAttempt`` (and drops it all) once the run has moved on to another attempt."""
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, []
            if self.stale is not None:
                raise self.stale
            if batch:
                self._write(batch)

    def close(self) -> None:
        """Write what is left and stop the writer thread."""
        self._closed.set()
        self._thread.join(timeout=30)
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _put(self, *item) -> None:
        with self._lock:
            self._pending.append(item)

    def _run(self) -> None:
        while not self._closed.wait(self.flush_every):
            try:
                self.flush()
            except StaleAttempt:
                break  # the worker hears it at its next checkpoint or from its heartbeat
            except Exception as exc:  # noqa: BLE001 - a busy store must not stop training
                print(f"store sink: {exc}", file=sys.stderr, flush=True)
        self.store.close()  # this thread's connection

    def _write(self, batch: list[tuple]) -> None:
        store, run_id, attempt = self.store, self.run_id, self.attempt
        try:
            with store.write() as conn:
                for kind, items in itertools.groupby(batch, key=lambda item: item[0]):
                    if kind == "metrics":  # consecutive steps: a few statements, not per step
                        store.add_steps(run_id, attempt, [tuple(i[1:]) for i in items], conn)
                    else:
                        for _, *args in items:
                            self._write_one(conn, kind, args)
        except StaleAttempt as exc:
            self.stale = exc  # never retried: nothing of this attempt may land any more
            raise
        except BaseException:
            with self._lock:  # keep them, in order, for the next try
                self._pending[:0] = batch
            raise

    def _write_one(self, conn, kind: str, args: list) -> None:
        store, run_id, attempt = self.store, self.run_id, self.attempt
        if kind == "samples":
            step, samples, at = args
            store.add_samples(run_id, attempt, step, samples, at, conn)
        elif kind == "event":
            store.add_event(run_id, attempt, *args, conn=conn)
        elif kind == "total_steps":
            store.set_total_steps(run_id, attempt, args[0], conn)
        elif kind == "checkpoint":
            store.record_checkpoint(run_id, attempt, *args, conn=conn)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB (VmHWM; None where /proc has none)."""
    try:
        with open("/proc/self/status") as status:
            kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
    return round(kb / 1024, 1)
