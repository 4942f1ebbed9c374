"""Attempts are fenced: once a run is resumed, its earlier worker writes nothing more.

A run taken for lost while its worker lived (another host judged it by silence, or a user
marked it) and resumed has two workers for one folder. The store refuses every write of
the old attempt, in the same transaction as the write, the old worker may not save a
checkpoint, and the new one does not train until the old one has stopped.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from gemma_panel.runs import StaleAttempt, StoreSink, spawn_worker, submit
from gemma_panel.runs import statuses as st
from tests.runs.conftest import FAKE, fake_recipe, wait_finished, wait_for


def _lose_and_resume(store, run_id):
    store.update_run(run_id, status=st.LOST, message="taken for lost")
    return store.requeue(run_id)


def test_the_store_refuses_every_write_of_a_superseded_attempt(store):
    run = store.create_run(fake_recipe())
    old = StoreSink(store, run.id)
    old.on_metrics(1, 8, {"loss": 1.0})
    old.flush()
    assert _lose_and_resume(store, run.id).attempt == 1
    writes = [lambda: store.add_metrics(run.id, 0, 2, 16, {"loss": 0.5}),
              lambda: store.add_samples(run.id, 0, 2, [{"prompt": "p"}]),
              lambda: store.add_event(run.id, 0, "log", "late"),
              lambda: store.record_checkpoint(run.id, 0, 2, "/x", False),
              lambda: store.set_total_steps(run.id, 0, 99),
              lambda: old.on_checkpoint_start(2)]
    for write in writes:
        with pytest.raises(StaleAttempt, match="attempt 1 may no longer write"):
            write()
    old.on_metrics(2, 16, {"loss": 0.5})
    with pytest.raises(StaleAttempt):
        old.close()
    after = store.get(run.id)
    assert (after.step, after.total_steps, after.checkpoint_step) == (1, None, None)
    assert [p.attempt for p in store.metrics(run.id)] == [0]
    assert store.samples(run.id) == [] and store.events(run.id, kinds=["log"]) == []
    store.add_metrics(run.id, 1, 2, 16, {"loss": 0.5})  # the current attempt writes


def _weight(steps: int) -> float:
    weight = 0.0
    for step in range(1, steps + 1):
        weight = weight * 0.9 + step  # fake_trainer's "training"
    return weight


def test_a_resumed_run_and_its_old_worker_never_write_together(store, monkeypatch):
    """Two real worker processes on one run: the old one is suspended (a laptop lid),
    taken for lost and resumed; woken, it writes nothing and stops; the new one waits for
    it, then continues from the last checkpoint to the uninterrupted result."""
    monkeypatch.setenv("FAKE_STEP_S", "0.2")
    run = submit(fake_recipe("train.max_steps=20"), store, trainer=FAKE)
    running = wait_for(lambda: (r := store.get(run.id)).checkpoint_step == 4 and r,
                       timeout=120, what="a checkpoint at step 4")  # the worker's start-up
    old_pid = running.worker_pid
    os.kill(old_pid, signal.SIGSTOP)
    try:
        resumed = _lose_and_resume(store, run.id)
        resume_seq = max(e.seq for e in store.events(run.id))
        metric_seq = max(p.seq for p in store.metrics(run.id))
        saved = {p.name for p in store.folder(run.id).checkpoints.iterdir()}
        spawn_worker(store, resumed.id)  # what resume() does after requeue()
        wait_for(lambda: store.get(run.id).worker_pid not in (None, old_pid),
                 what="the new worker to register")
        time.sleep(2)  # long enough to start training, had it not waited for the old one
        assert store.get(run.id).status == st.QUEUED
    finally:
        os.kill(old_pid, signal.SIGCONT)
    done = wait_finished(store, run.id)
    assert done.status == st.SUCCEEDED and done.step == 20 and done.attempt == 1
    text = store.folder(run.id).log_path.read_text()
    assert "waiting for the earlier worker" in text
    assert text.index("attempt 0 was taken over") < text.index("attempt 1 started")
    late = [e for e in store.events(run.id, since=resume_seq) if e.attempt == 0]
    assert late == []
    assert [p for p in store.metrics(run.id, since=metric_seq) if p.attempt == 0] == []
    assert [s for s in store.samples(run.id) if s.attempt == 0 and s.step > 4] == []
    new = {e.data["step"] for e in store.events(run.id, kinds=["checkpoint"]) if e.attempt == 1}
    written = {p.name for p in store.folder(run.id).checkpoints.iterdir()}
    assert written <= saved | {f"step-{s:06d}" for s in new}  # none saved by the old one
    start = store.events(run.id, kinds=["start"])[-1]
    assert start.attempt == 1 and f"step-{start.data['start_step']:06d}" == max(saved)
    last = max(store.folder(run.id).checkpoints.glob("step-*/meta.json"))
    assert json.loads(last.read_text())["weight"] == _weight(20)



def test_a_run_taken_for_lost_but_not_resumed_is_running_again_when_its_worker_beats(store,
                                                                                     monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.1")
    run = submit(fake_recipe("train.max_steps=30"), store, trainer=FAKE)
    wait_for(lambda: store.get(run.id).step >= 2, what="two steps")
    store.update_run(run.id, status=st.LOST, message="judged by silence from another host")
    back = wait_for(lambda: (r := store.get(run.id)).status == st.RUNNING and r,
                    timeout=5, what="the heartbeat to bring it back")
    assert back.message is None and back.ended_at is None
    done = wait_finished(store, run.id)
    assert done.status == st.SUCCEEDED and done.step == 30 and done.attempt == 0
    assert [e.message for e in store.events(run.id, kinds=["status"])][-2:] == ["running",
                                                                                "succeeded"]
