"""The states a run can be in, and what each allows.

    queued ──> running ──> succeeded
      │           ├──────> failed     (the cause in words, with the log tail)
      │           ├──────> cancelled  (a checkpoint was saved)
      │           └──────> lost       (the worker died: SIGKILL, out of memory, reboot)
      └──> cancelled (before it started)

failed, cancelled and lost runs can be resumed: they go back to ``queued`` and continue from
their last checkpoint. Nothing ever leaves a run ``running`` without a live worker: a reader
that finds a dead worker's run records it as ``lost`` (see ``liveness``). A resume is a new
attempt; from then on the store refuses every write of the earlier ones. A lost run whose
worker beats again before it is resumed (a host that judged it by silence was wrong) is
``running`` again.
"""

from __future__ import annotations

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
LOST = "lost"

STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, LOST)
ACTIVE = frozenset({QUEUED, RUNNING})
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED, LOST})
RESUMABLE = frozenset({FAILED, CANCELLED, LOST})

# What ``gemma-panel run`` exits with when it follows a run to its end.
EXIT_CODES = {SUCCEEDED: 0, FAILED: 1, CANCELLED: 3, LOST: 4}


def exit_code(status: str) -> int:
    """The process exit code for a finished run's status (2 is kept for usage errors)."""
    return EXIT_CODES.get(status, 1)
