"""Fixtures for the run tests: a private store with fast heartbeats, recipes, waiting."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.runs import RunStore

REPO = Path(__file__).resolve().parents[2]
FAKE = "tests.runs.fake_trainer:train"


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    """A store of its own; workers beat every 0.25 s and can import the test trainer."""
    monkeypatch.setenv("GEMMA_PANEL_HEARTBEAT_S", "0.25")
    monkeypatch.setenv("GEMMA_PANEL_LOST_AFTER_S", "3")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    s = RunStore(tmp_path / "home")
    yield s
    _stop_workers(s)
    s.close()


def _stop_workers(store: RunStore) -> None:
    """Kill any worker a failing test left behind (only this store's, by pid)."""
    import signal

    from gemma_panel.runs.liveness import process_alive

    for run in store.list_runs():
        if run.status in ("queued", "running") and run.worker_pid not in (None, os.getpid()) \
                and process_alive(
                run.worker_pid, run.worker_start, run.worker_host):
            try:
                os.kill(run.worker_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def fake_recipe(*overrides: str, name: str = "fake"):
    return load_recipe(None, [f"name={name}", "train.max_steps=12", "train.warmup_steps=1",
                              "train.checkpoint_every=4", *overrides])


def wait_for(predicate, timeout: float = 30.0, every: float = 0.05, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; return its value, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_finished(store: RunStore, run_id: str, timeout: float = 30.0):
    return wait_for(lambda: (r := store.get(run_id)).status in
                    ("succeeded", "failed", "cancelled", "lost") and r,
                    timeout, what=f"run {run_id} to finish")
