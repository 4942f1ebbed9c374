"""Background work for the dashboard: anything slow runs in a thread, never in the event loop.

Each ``Jobs`` (one per browser session) has its own small pool of threads, so a slow job
in one tab (a tokenizer's first import, a large file's check) never waits in line in front
of another tab's work, and the Bokeh event loop only ever applies finished results.

A view-model hands a function to ``Jobs.submit``; the function runs in a worker thread and
its result is applied by ``Jobs.poll()``, which the app calls from its periodic callback,
on the thread that owns the page. So param values, and the Bokeh models that follow them,
only ever change on the page's own thread, in a served app and in a notebook alike; tests
call ``Jobs.wait()`` instead.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gemma_panel.errors import as_user_error

# Per session: a check and a token measurement run side by side; the threads start on
# first use and end when the session's Jobs is closed or collected.
THREADS_PER_SESSION = 2


@dataclass
class _Job:
    label: str
    future: Future
    on_done: Callable[[Any], None]
    on_error: Callable[[BaseException], None] | None
    started: float


class Jobs:
    """Futures waiting to be applied on the page's thread.

    Example:
        >>> jobs = Jobs()
        >>> jobs.submit("check data", lambda: 42, on_done=print)
        >>> jobs.wait()   # in a test; the app calls jobs.poll() periodically
        42
    """

    def __init__(self):
        self._jobs: list[_Job] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=THREADS_PER_SESSION,
                                        thread_name_prefix="gemma-panel-ui")

    def submit(self, label: str, fn: Callable[[], Any], on_done: Callable[[Any], None],
               on_error: Callable[[BaseException], None] | None = None) -> Future:
        future = self._pool.submit(fn)
        with self._lock:
            self._jobs.append(_Job(label, future, on_done, on_error, time.monotonic()))
        return future

    @property
    def running(self) -> list[str]:
        """Labels of the jobs not yet applied, oldest first."""
        with self._lock:
            return [j.label for j in self._jobs]

    def poll(self) -> int:
        """Apply the results of finished jobs, in submission order; returns how many."""
        with self._lock:
            done = [j for j in self._jobs if j.future.done()]
            self._jobs = [j for j in self._jobs if not j.future.done()]
        for job in done:
            if job.future.cancelled():  # closed with the session
                continue
            exc = job.future.exception()
            if exc is None:
                job.on_done(job.future.result())
            else:
                self._failed(job, exc)
        return len(done)

    def wait(self, timeout: float = 60.0) -> None:
        """Block until every job (and any job those start) has been applied."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [j.future for j in self._jobs]
            if not pending:
                return
            for future in pending:
                future.exception(timeout=max(0.0, deadline - time.monotonic()))
            self.poll()
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still running after {timeout} s: {self.running}")

    def close(self) -> None:
        """The session ended: drop the jobs not yet started; running ones finish unseen."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _failed(job: _Job, exc: BaseException) -> None:
        """As the CLI's boundary does: a user error is its sentence, a bug its traceback.

        ``on_error`` gets the `UserError` (a locked database arrives as one), or the bug."""
        error = as_user_error(exc)
        if error is None:
            traceback.print_exception(exc)  # to the server's log, whoever shows the error
        if job.on_error is not None:
            job.on_error(error or exc)
        elif error is not None:
            print(f"gemma-panel: {job.label}: {error}", file=sys.stderr)
