"""What the store hands back: plain, immutable records that any front end can hold."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .statuses import RunStatus


@dataclass(frozen=True)
class Run:
    """One run as the store knows it.

    ``step``, ``tokens`` and ``total_steps`` follow the newest metrics; ``message`` says why a
    run failed, was cancelled or was lost, in words; ``log_tail`` holds the last lines of the
    worker's log for a failed or lost run; ``attempt`` counts resumes (0: the first try).
    """

    id: str
    name: str
    status: RunStatus
    created_at: float
    queued_at: float
    queue_pos: int
    started_at: float | None
    ended_at: float | None
    attempt: int
    message: str | None
    log_tail: str | None
    trainer: str
    run_dir: Path
    recipe_yaml: str
    worker_pid: int | None
    worker_start: str | None
    worker_host: str | None
    heartbeat_at: float | None
    cancel_requested: bool
    step: int
    total_steps: int | None
    tokens: int
    checkpoint_step: int | None
    checkpoint_path: str | None
    backend: str = "local"  # "vertex": a Vertex AI job trains it (``job_name``), not a worker
    job_name: str | None = None  # projects/P/locations/R/customJobs/ID
    remote_dir: str | None = None  # gs://: the run folder's copy (metrics, samples, checkpoints)
    remote_cursor: str | None = None  # the last record chunk read back from remote_dir
    notes: str = ""  # the user's own words about the run (``labels.py``)
    tags: tuple[str, ...] = ()  # the user's labels, sorted, each at most once
    model: str | None = None  # the recipe's model.source, for filtering the list

    @property
    def remote(self) -> bool:
        """Trained by a job elsewhere: no worker here; its state comes from polling."""
        return self.backend != "local"

    @classmethod
    def from_row(cls, row) -> Run:
        data = dict(row)
        data["run_dir"] = Path(data["run_dir"])
        data["status"] = RunStatus(data["status"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        data["tags"] = tuple(json.loads(data.get("tags") or "[]"))
        return cls(**data)

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (or to now, while running)."""
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    @property
    def progress(self) -> float | None:
        """Share of the steps done, 0..1, when the total is known."""
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)


@dataclass(frozen=True)
class MetricPoint:
    """One named value at an optimizer step. ``seq`` orders all rows; use it as a cursor."""

    seq: int
    run_id: str
    attempt: int
    step: int
    tokens: int
    name: str
    value: float | None
    time: float


@dataclass(frozen=True)
class Sample:
    """A generation at an evaluation: the prompt, the reference, base and tuned answers."""

    seq: int
    run_id: str
    attempt: int
    step: int
    idx: int
    prompt: str
    reference: str | None
    base: str | None
    tuned: str | None
    time: float


@dataclass(frozen=True)
class Event:
    """Something that happened to a run: start, checkpoint, log, status, end."""

    seq: int
    run_id: str
    attempt: int
    time: float
    kind: str
    message: str | None
    data: dict | None

    @classmethod
    def from_row(cls, row) -> Event:
        data = dict(row)
        data["data"] = json.loads(data["data"]) if data["data"] else None
        return cls(**data)
