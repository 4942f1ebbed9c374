"""The worker's own entry point, ``python -m gemma_panel.runs.worker RUN_ID``: what the queue
starts, and a process that never loads the command line."""

from __future__ import annotations

import subprocess
import sys

from gemma_panel.runs import queue, submit
from gemma_panel.runs import statuses as st
from tests.runs.conftest import FAKE, REPO, fake_recipe, wait_finished


def test_the_queue_starts_workers_through_their_own_entry_point(store, monkeypatch):
    started, real_popen = [], subprocess.Popen

    def recording(command, **kwargs):
        started.append(command)
        return real_popen(command, **kwargs)

    monkeypatch.setattr(queue.subprocess, "Popen", recording)
    run = submit(fake_recipe(), store, trainer=FAKE)
    assert started[0][1:4] == ["-m", "gemma_panel.runs.worker", run.id]
    assert wait_finished(store, run.id).status == st.SUCCEEDED


def test_a_worker_trains_its_run_without_importing_the_cli(store):
    run = store.create_run(fake_recipe("train.max_steps=3"), trainer=FAKE)  # no worker yet
    done = subprocess.run(  # -X importtime names every module the process imports
        [sys.executable, "-X", "importtime", "-m", "gemma_panel.runs.worker", run.id,
         "--store", str(store.root), "--foreground"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run {run.id} succeeded" in done.stdout
    assert store.get(run.id).status == st.SUCCEEDED
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")]
    assert "gemma_panel.runs.worker" in imported
    assert not [m for m in imported if m.startswith("gemma_panel.cli")]


def test_a_worker_for_an_unknown_run_says_so_in_one_line(store):
    done = subprocess.run(
        [sys.executable, "-m", "gemma_panel.runs.worker", "no-such-run", "--store",
         str(store.root)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gemma-panel worker: "), done.stderr
    assert "no-such-run" in lines[0]
