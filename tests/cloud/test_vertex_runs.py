"""A Vertex AI job is a run in the store: its state polled into our statuses, cancel sent.

The real SDK's REST client talks to the loopback JobService (tests/cloud/vertex_server.py);
the recipe upload of ``cloud submit`` goes to gcp-storage-emulator.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from gemma_panel.cli import main
from gemma_panel.config import load_recipe
from gemma_panel.runs import RunStateError, RunStore, cancel, recover, resume
from gemma_panel.runs.remote import poll

RECIPE = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"
JOB = "projects/p1/locations/us-central1/customJobs/{}"
_ids = itertools.count(1)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "home")


def _job_run(store, server, state, error=None):
    """A vertex run in ``store`` whose job the loopback server holds in ``state``."""
    name = JOB.format(next(_ids))
    server.jobs[name] = {"name": name, "state": state,
                         **({"error": {"code": 3, "message": error}} if error else {})}
    return store.create_remote_run(load_recipe(RECIPE), backend="vertex", job_name=name,
                                   remote_dir=None)


@pytest.mark.parametrize("state, status", [
    ("JOB_STATE_QUEUED", "queued"), ("JOB_STATE_PENDING", "queued"),
    ("JOB_STATE_RUNNING", "running"), ("JOB_STATE_SUCCEEDED", "succeeded"),
    ("JOB_STATE_CANCELLING", "cancelled"), ("JOB_STATE_CANCELLED", "cancelled")])
def test_each_job_state_maps_to_a_status(store, vertex_api, state, status):
    run = _job_run(store, vertex_api, state)
    assert poll(store) == []
    after = store.get(run.id)
    assert after.status == status
    assert vertex_api.calls[-1][:2] == ("GET", f"/v1/{run.job_name}")
    if status == "succeeded":  # seen ended at its first poll: it went through running
        kinds = [e.message for e in store.events(run.id, kinds=["status"])]
        assert kinds == ["queued", "running", "succeeded"]
        assert after.started_at is not None and after.ended_at is not None


def test_a_failed_job_fails_the_run_with_its_error(store, vertex_api):
    run = _job_run(store, vertex_api, "JOB_STATE_RUNNING")
    poll(store)
    vertex_api.jobs[run.job_name].update(state="JOB_STATE_FAILED",
                                         error={"code": 13, "message": "replica 0 OOM"})
    poll(store)
    after = store.get(run.id)
    assert after.status == "failed"
    assert after.message == "the Vertex AI job failed: replica 0 OOM"
    calls = len(vertex_api.calls)
    poll(store)  # a finished run is not asked about again
    assert len(vertex_api.calls) == calls


def test_cancel_sends_the_cancel_call(store, vertex_api):
    run = _job_run(store, vertex_api, "JOB_STATE_RUNNING")
    poll(store)
    after = cancel(run.id, store)
    assert ("POST", f"/v1/{run.job_name}:cancel", {}) in [
        (m, p, b or {}) for m, p, b in vertex_api.calls]
    assert after.status == "cancelled"  # the server answers CANCELLING at the next GET
    assert after.message == f"the Vertex AI job {run.job_name} was cancelled"
    with pytest.raises(RunStateError, match="submit the recipe again"):
        resume(run.id, store)


def test_an_unreachable_job_is_a_warning_and_keeps_its_status(store, vertex_api):
    run = _job_run(store, vertex_api, "JOB_STATE_RUNNING")
    del vertex_api.jobs[run.job_name]
    (problem,) = poll(store)
    assert problem.run_id == run.id and "could not read the state of" in problem.message
    assert store.get(run.id).status == "queued"


def test_the_local_queue_leaves_job_runs_alone(store, vertex_api):
    """No worker is started for a queued job run, and a running one is never taken for
    lost: no worker here beats its heartbeat."""
    run = _job_run(store, vertex_api, "JOB_STATE_RUNNING")
    assert recover(store) == []
    poll(store)
    store.update_run(run.id, heartbeat_at=time.time() - 10 * store.timings.lost_after_s)
    assert store.mark_lost() == []
    assert store.get(run.id).status == "running"


def test_cloud_submit_records_a_run_that_runs_list_follows(gcs, vertex_api, tmp_path,
                                                         monkeypatch, capsys):
    _, bucket = gcs
    bucket.blob("d/train.jsonl").upload_from_string(b'{"prompt": "a", "response": "b"}\n')
    monkeypatch.setenv("GEMMA_PANEL_HOME", str(tmp_path / "home"))
    data = f"data.train_path=gs://{bucket.name}/d/train.jsonl"
    assert main(["cloud", "submit", str(RECIPE), data, "--accelerator", "l4", "--project",
                 "p1", "--output", f"gs://{bucket.name}/jobs", "--job-id", "j1", "--yes"]) == 0
    out = capsys.readouterr().out
    (run,) = RunStore().list_runs()
    assert (run.backend, run.status) == ("vertex", "queued")
    assert run.job_name == "projects/p1/locations/us-central1/customJobs/1000"
    assert run.remote_dir == f"gs://{bucket.name}/jobs/j1"
    assert f"as run {run.id}" in out
    vertex_api.jobs[run.job_name]["state"] = "JOB_STATE_RUNNING"
    assert main(["runs", "list"]) == 0
    assert f"{run.id:<28} running" in capsys.readouterr().out
    assert main(["runs", "cancel", run.id]) == 0
    assert vertex_api.calls[-2][:2] == ("POST", f"/v1/{run.job_name}:cancel")
    assert main(["runs", "show", run.id]) == 0
    shown = capsys.readouterr().out
    assert "status   cancelled" in shown and f"job      {run.job_name}" in shown


def test_the_dashboard_polls_remote_runs_in_the_background_and_not_too_often(store,
                                                                          vertex_api):
    from gemma_panel.ui.runs_model import RunsModel

    run = _job_run(store, vertex_api, "JOB_STATE_RUNNING")
    model = RunsModel(store)
    model.poll_remote()
    model.jobs.wait(60)
    model.jobs.poll()
    assert store.get(run.id).status == "running"
    vertex_api.jobs[run.job_name]["state"] = "JOB_STATE_SUCCEEDED"
    calls = len(vertex_api.calls)
    model.poll_remote()  # within the interval: no API call
    model.jobs.wait(60)
    assert len(vertex_api.calls) == calls and store.get(run.id).status == "running"
    model.poll_remote(every_s=0)
    model.jobs.wait(60)
    model.jobs.poll()
    assert store.get(run.id).status == "succeeded"
