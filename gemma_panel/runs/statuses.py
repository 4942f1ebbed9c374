"""The states a run can be in, which moves between them are allowed, and what each allows.

    queued ──> running ──> succeeded
      │           ├──────> failed     (the cause in words, with the log tail; "out of
      │           │                    memory (...)" with remedies: see out_of_memory.py)
      │           ├──────> cancelled  (a checkpoint was saved)
      │           └──────> lost       (the worker died: SIGKILL, out of memory, reboot)
      └──> cancelled (before it started)

failed, cancelled and lost runs can be resumed: they go back to ``queued`` and continue from
their last checkpoint. Nothing ever leaves a run ``running`` without a live worker: a reader
that finds a dead worker's run records it as ``lost`` (see ``liveness``). A resume is a new
attempt; from then on the store refuses every write of the earlier ones. A lost run whose
worker beats again before it is resumed (a host that judged it by silence was wrong) is
``running`` again, and its worker may still record how it ended.

``stopped_early`` is what the trainer says when early stopping ended the training; the
store records that run as ``succeeded`` (the reason in its message): no run is ever in it.

Only ``RunStore`` changes a status, and only along ``MOVES`` (see ``transitions.py``).
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status; equal to its name in the store (``RunStatus.LOST == "lost"``)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    STOPPED_EARLY = "stopped_early"  # the trainer's word only: recorded as succeeded

    @property
    def active(self) -> bool:
        """Queued or running: it holds (or waits for) a worker; it cannot be deleted."""
        return self in ACTIVE

    @property
    def finished(self) -> bool:
        """Its worker has ended (a lost run's worker may still come back: see above)."""
        return self in FINISHED

    @property
    def resumable(self) -> bool:
        return self in RESUMABLE


# The members under their short names: ``st.RUNNING`` at call sites.
QUEUED = RunStatus.QUEUED
RUNNING = RunStatus.RUNNING
SUCCEEDED = RunStatus.SUCCEEDED
FAILED = RunStatus.FAILED
CANCELLED = RunStatus.CANCELLED
LOST = RunStatus.LOST
STOPPED_EARLY = RunStatus.STOPPED_EARLY

ACTIVE = frozenset({QUEUED, RUNNING})
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED, LOST})
RESUMABLE = frozenset({FAILED, CANCELLED, LOST})

# Every allowed move: status -> the statuses it may become. Anything else is refused.
MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, LOST}),
    LOST: frozenset({RUNNING, SUCCEEDED, FAILED, CANCELLED, QUEUED}),
    FAILED: frozenset({QUEUED}),
    CANCELLED: frozenset({QUEUED}),
    SUCCEEDED: frozenset(),
}


def sources(target: RunStatus) -> tuple[RunStatus, ...]:
    """The statuses a run may be in to move to ``target`` (sorted: stable SQL)."""
    return tuple(sorted(s for s, targets in MOVES.items() if target in targets))


# The start of a failed run's message when it died of memory exhaustion (MemoryError, XLA's
# RESOURCE_EXHAUSTED, or the kernel's OOM killer): ``failed: out of memory (...)``.
OUT_OF_MEMORY = "out of memory"

# What ``gemma-panel run`` exits with when it follows a run to its end.
EXIT_CODES = {SUCCEEDED: 0, FAILED: 1, CANCELLED: 3, LOST: 4}


def exit_code(status: str) -> int:
    """The process exit code for a finished run's status (2 is kept for usage errors)."""
    return EXIT_CODES.get(status, 1)
