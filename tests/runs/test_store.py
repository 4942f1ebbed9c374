"""RunStore on its own: runs, statuses, incremental reads, cancel/resume rules, deletion."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from gemma_panel.runs import RunNotFound, RunStateError, StoreSink
from gemma_panel.runs import statuses as st
from tests.runs.conftest import fake_recipe, wait_for


def test_store_is_sqlite_in_wal_mode_with_the_four_tables(store):
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "metrics", "samples", "events"} <= tables


def test_create_run_writes_folder_with_resolved_recipe_and_fingerprint(store, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n')
    run = store.create_run(fake_recipe("data.train_path=d.jsonl", name="My Run!"), cwd=tmp_path)
    assert run.status == st.QUEUED and run.id.startswith("my-run-")
    folder = store.folder(run.id)
    assert str(data.resolve()) in folder.recipe_path.read_text()
    fingerprint = json.loads(folder.dataset_path.read_text())["train_path"]
    assert fingerprint["bytes"] == data.stat().st_size and len(fingerprint["sha256"]) == 64
    assert folder.checkpoints.is_dir() and folder.exports.is_dir()


def test_get_by_unique_prefix_and_clear_errors(store):
    a = store.create_run(fake_recipe(name="alpha"))
    b = store.create_run(fake_recipe(name="beta"))
    assert store.get("alp").id == a.id and store.get(b.id).id == b.id
    store.create_run(fake_recipe(name="alpha"))
    with pytest.raises(RunNotFound, match="2 runs"):
        store.get("alpha-")
    with pytest.raises(RunNotFound, match="no run"):
        store.get("nothing")
    assert [r.id for r in store.list_runs()][-2:] == [b.id, a.id]  # newest first
    assert [r.id for r in store.list_runs("queued")] != []


def test_metrics_since_returns_only_new_rows_in_order(store):
    run = store.create_run(fake_recipe())
    sink = StoreSink(store, run.id)
    sink.on_start({"total_steps": 5, "recipe": {"huge": "not stored"}})
    for step in (1, 2):
        sink.on_metrics(step, step * 100, {"loss": 3.0 - step, "learning_rate": 1e-4})
    sink.flush()
    first = store.metrics(run.id)
    assert [(p.step, p.name) for p in first] == [(1, "loss"), (1, "learning_rate"),
                                                 (2, "loss"), (2, "learning_rate")]
    sink.on_metrics(3, 300, {"loss": 0.5})
    sink.close()
    newer = store.metrics(run.id, since=first[-1].seq)
    assert [(p.step, p.tokens, p.value) for p in newer] == [(3, 300, 0.5)]
    assert store.metrics(run.id, since=newer[-1].seq) == []
    assert [p.step for p in store.metrics(run.id, names=["learning_rate"])] == [1, 2]
    got = store.get(run.id)
    assert (got.step, got.tokens, got.total_steps) == (3, 300, 5)
    assert store.latest_metrics(run.id) == {"loss": 0.5, "learning_rate": 1e-4}
    start = store.events(run.id, kinds=["start"])[0]
    assert start.data == {"total_steps": 5}


def test_a_flush_of_many_steps_is_a_few_statements_in_one_transaction(store):
    # Each statement lets the GIL go and take it back per row; a flush used to run three
    # statements a step (fence, insert, update), which the training thread paid for.
    run = store.create_run(fake_recipe())
    sink = StoreSink(store, run.id, flush_every=3600)
    names = [f"m{i}" for i in range(8)]
    for step in range(1, 41):
        sink.on_metrics(step, step * 10, {n: step + i / 10 for i, n in enumerate(names)})
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    sink.flush()
    store.conn.set_trace_callback(None)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert len(statements) <= 7, statements  # begin, fence, 3 inserts of 128 rows, update, commit
    points = store.metrics(run.id)
    assert [(p.step, p.name, p.value) for p in points] == [
        (step, n, step + i / 10) for step in range(1, 41) for i, n in enumerate(names)]
    assert [p.tokens for p in points[::8]] == [step * 10 for step in range(1, 41)]
    got = store.get(run.id)
    assert (got.step, got.tokens) == (40, 400)
    sink.close()


def test_metrics_reach_readers_within_flush_every_without_a_flush(store):
    run = store.create_run(fake_recipe())
    with StoreSink(store, run.id, flush_every=0.1) as sink:
        sink.on_metrics(1, 10, {"loss": 1.0, "learning_rate": 0.1})
        assert store.metrics(run.id) == []  # not yet: the training thread only queued it
        wait_for(lambda: len(store.metrics(run.id)) == 2, timeout=5, what="the writer thread")
        sink.on_metrics(2, 20, {"loss": 0.5})
        sink.on_checkpoint(2, "/ckpt", False)  # a checkpoint writes through, metrics first
        assert [p.step for p in store.metrics(run.id)] == [1, 1, 2]


def test_non_finite_and_non_numeric_values_are_stored_as_null(store):
    run = store.create_run(fake_recipe())
    with StoreSink(store, run.id) as sink:
        sink.on_metrics(1, 10, {"loss": math.nan, "note": "text"})
    assert [p.value for p in store.metrics(run.id)] == [None, None]


def test_samples_checkpoints_logs_and_end_are_recorded(store):
    run = store.create_run(fake_recipe())
    sink = StoreSink(store, run.id)
    sink.on_samples(5, [{"prompt": "p", "reference": "r", "base": "b", "tuned": "t"}])
    sink.on_checkpoint(5, "/x/step-000005", True)
    sink.on_log("hello")
    sink.on_end("succeeded", None)
    sink.close()
    (sample,) = store.samples(run.id)
    assert (sample.step, sample.prompt, sample.tuned) == (5, "p", "t")
    got = store.get(run.id)
    assert (got.checkpoint_step, got.checkpoint_path) == (5, "/x/step-000005")
    kinds = [e.kind for e in store.events(run.id)]
    assert kinds[-3:] == ["checkpoint", "log", "end"]
    assert got.status == st.QUEUED  # the trainer's on_end does not set the status
    end = store.events(run.id, kinds=["end"])[-1].data
    # the process's peak memory (VmHWM): this test process holds at least its imports
    assert end["status"] == "succeeded" and 20 < end["peak_rss_mb"] < 1e6


def test_cancel_of_a_queued_run_is_immediate(store):
    run = store.create_run(fake_recipe())
    got = store.request_cancel(run.id)
    assert got.status == st.CANCELLED and got.message == "cancelled before it started"


def test_cancel_of_a_running_run_sets_the_flag_only(store):
    run = store.create_run(fake_recipe())
    store.update_run(run.id, status=st.RUNNING)
    got = store.request_cancel(run.id)
    assert got.status == st.RUNNING and got.cancel_requested and store.cancel_requested(run.id)


def test_only_failed_cancelled_lost_runs_resume(store):
    run = store.create_run(fake_recipe())
    with pytest.raises(RunStateError, match="only failed, cancelled and lost"):
        store.requeue(run.id)
    for status in sorted(st.RESUMABLE):
        store.update_run(run.id, status=status, message="why")
        again = store.requeue(run.id)
        assert again.status == st.QUEUED and again.message is None
    assert again.attempt == 3
    other = store.create_run(fake_recipe())
    store.update_run(run.id, status=st.FAILED)
    assert store.requeue(run.id).queue_pos > other.queue_pos  # a resumed run queues at the end


def test_delete_removes_rows_and_folder_and_refuses_active_runs(store):
    run = store.create_run(fake_recipe())
    with StoreSink(store, run.id) as sink:
        sink.on_metrics(1, 1, {"loss": 1.0})
    with pytest.raises(RunStateError, match="cancel it first"):
        store.delete(run.id)
    store.request_cancel(run.id)
    store.delete(run.id)
    assert not store.folder(run.id).path.exists()
    with pytest.raises(RunNotFound):
        store.get(run.id)
    assert store.metrics(run.id) == [] and store.events(run.id) == []


def test_max_parallel_setting_is_shared_through_the_database(store):
    from gemma_panel.runs import RunStore

    assert store.max_parallel == 1
    store.set_max_parallel(3)
    assert RunStore(store.root).max_parallel == 3
    with pytest.raises(ValueError):
        store.set_max_parallel(0)
