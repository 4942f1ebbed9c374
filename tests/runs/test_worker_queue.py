"""Workers and the queue, with a stand-in trainer (fake_trainer.py) so each test takes
seconds; test_real_trainer.py repeats the essential ones with the real trainer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from gemma_panel.runs import cancel, recover, resume, submit
from gemma_panel.runs import statuses as st
from tests.runs.conftest import FAKE, REPO, fake_recipe, wait_finished, wait_for


def _final_weight(store, run_id) -> float:
    found = sorted(store.folder(run_id).checkpoints.glob("step-*/meta.json"))
    return json.loads(found[-1].read_text())["weight"]


def test_a_submitted_run_trains_in_its_own_process_and_succeeds(store):
    run = submit(fake_recipe(), store, trainer=FAKE)
    assert run.status == st.QUEUED
    done = wait_finished(store, run.id)
    assert done.status == st.SUCCEEDED and done.message is None
    assert done.worker_pid != os.getpid() and (done.step, done.total_steps) == (12, 12)
    assert [p.step for p in store.metrics(run.id, names=["loss"])] == list(range(1, 13))
    assert [s.tuned for s in store.samples(run.id)] == ["4 at 5", "4 at 10"]
    statuses = [e.message for e in store.events(run.id, kinds=["status"])]
    assert statuses == ["queued", "running", "succeeded"]
    assert "run " + run.id + " succeeded" in store.folder(run.id).log_path.read_text()


def test_a_training_error_fails_the_run_with_the_cause_in_words(store):
    run = submit(fake_recipe(name="raise"), store, trainer=FAKE)
    done = wait_finished(store, run.id)
    assert done.status == st.FAILED
    assert done.message == "the loss became nan at step 3: lower train.learning_rate"
    assert "TrainingError" in done.log_tail  # the traceback is in the log tail


def test_a_bug_fails_the_run_and_says_it_crashed(store):
    done = wait_finished(store, submit(fake_recipe(name="crash"), store, trainer=FAKE).id)
    assert done.status == st.FAILED and "crashed (ZeroDivisionError" in done.message


def test_cancel_stops_a_running_run_at_its_next_step_with_a_checkpoint(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.2")
    run = submit(fake_recipe("train.max_steps=200"), store, trainer=FAKE)
    wait_for(lambda: store.get(run.id).step >= 2, what="two steps")
    cancel(run.id, store)
    done = wait_finished(store, run.id)
    assert done.status == st.CANCELLED and done.step < 10
    assert done.checkpoint_step == done.step  # saved at the step it stopped
    assert "cancelled at step" in done.message and "checkpoint saved" in done.message
    assert store.folder(run.id).has_checkpoint()


def test_sigterm_also_cancels_with_a_checkpoint(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.2")
    run = submit(fake_recipe("train.max_steps=200"), store, trainer=FAKE)
    running = wait_for(lambda: (r := store.get(run.id)).step >= 1 and r, what="a step")
    os.kill(running.worker_pid, signal.SIGTERM)
    done = wait_finished(store, run.id)
    assert done.status == st.CANCELLED and "SIGTERM" in done.message


def test_killed_worker_is_lost_quickly_then_resumes_to_the_same_result(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.1")
    reference = wait_finished(store, submit(fake_recipe("train.max_steps=30"), store,
                                            trainer=FAKE).id)
    run = submit(fake_recipe("train.max_steps=30"), store, trainer=FAKE)
    running = wait_for(lambda: (r := store.get(run.id)).checkpoint_step == 8 and r,
                       what="a checkpoint at step 8")
    os.kill(running.worker_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    lost = wait_for(lambda: (r := store.get(run.id)).status == st.LOST and r, timeout=10,
                    what="lost")
    assert time.monotonic() - killed_at < 4 * store.timings.heartbeat_s + 1
    assert "stopped without a word" in lost.message and lost.step < 30
    resumed = resume(run.id, store)
    assert resumed.status == st.QUEUED and resumed.attempt == 1
    done = wait_finished(store, run.id)
    assert done.status == st.SUCCEEDED and done.step == 30
    assert _final_weight(store, run.id) == _final_weight(store, reference.id)
    starts = store.events(run.id, kinds=["start"])
    assert starts[-1].data["start_step"] == 8  # continued from the checkpoint, not step 0


def test_runs_queued_from_two_processes_run_one_after_the_other_in_order(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    code = ("import sys; from gemma_panel.runs import RunStore, submit; "
            "from tests.runs.conftest import fake_recipe, FAKE; "
            "print(submit(fake_recipe(name=sys.argv[2]), RunStore(sys.argv[1]), "
            "trainer=FAKE).id)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store.root), name], cwd=REPO,
                              stdout=subprocess.PIPE, text=True) for name in ("one", "two")]
    ids = [p.communicate(timeout=60)[0].strip() for p in procs]
    runs = sorted((wait_finished(store, i) for i in ids), key=lambda r: r.queue_pos)
    assert [r.status for r in runs] == [st.SUCCEEDED, st.SUCCEEDED]
    first, second = runs
    assert first.ended_at <= second.started_at  # never both running
    assert max(r.duration_s for r in runs) < second.ended_at - first.started_at


def test_max_parallel_two_lets_two_runs_overlap(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.1")
    store.set_max_parallel(2)
    a, b = (submit(fake_recipe(), store, trainer=FAKE) for _ in range(2))
    a, b = wait_finished(store, a.id), wait_finished(store, b.id)
    assert a.status == b.status == st.SUCCEEDED
    assert b.started_at < a.ended_at and a.started_at < b.ended_at


def test_cancelling_a_queued_run_removes_it_from_the_queue(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.1")
    first = submit(fake_recipe(), store, trainer=FAKE)
    second = submit(fake_recipe(), store, trainer=FAKE)
    assert cancel(second.id, store).status == st.CANCELLED
    assert wait_finished(store, first.id).status == st.SUCCEEDED
    time.sleep(1)
    after = store.get(second.id)
    assert after.status == st.CANCELLED and after.started_at is None
    log = store.folder(second.id).log_path.read_text()
    assert "started" not in log and ("left the queue" in log or "is cancelled" in log)


def test_a_queued_run_whose_worker_died_gets_a_new_one(store):
    run = store.create_run(fake_recipe(), trainer=FAKE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.update_run(run.id, worker_pid=dead.pid, worker_host=os.uname().nodename)
    assert recover(store) == [run.id]
    assert recover(store) == []  # a worker is on its way: nobody starts a second one
    assert wait_finished(store, run.id).status == st.SUCCEEDED
