"""Vertex AI CustomJob specs from recipes, and the REST calls the real SDK makes for them.

The SDK's JobServiceClient (REST transport, anonymous credentials) talks to a loopback
server that records its calls (tests/cloud/vertex_server.py); the recipe upload goes to
gcp-storage-emulator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemma_panel import __version__
from gemma_panel.cli import main
from gemma_panel.cloud import vertex
from gemma_panel.cloud.vertex import JobOptions
from gemma_panel.config import load_recipe, recipe_to_yaml
from gemma_panel.errors import UserError

RECIPE = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def _dry_run(capsys, *extra) -> dict:
    assert main(["cloud", "submit", str(RECIPE), "--output", "gs://my-bucket/jobs",
                 "--job-id", "q1", "--dry-run", *extra]) == 0
    out = capsys.readouterr().out
    from google.cloud import aiplatform_v1

    aiplatform_v1.CustomJob.from_json(out)  # what the API would accept, field for field
    return json.loads(out)


def test_dry_run_tpu_pool(capsys):
    job = _dry_run(capsys, "--accelerator", "tpu-v5e-4", "--image-repo", "repo/x",
                   "--service-account", "trainer@p.iam.gserviceaccount.com")
    assert job["jobSpec"]["serviceAccount"] == "trainer@p.iam.gserviceaccount.com"
    (pool,) = job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "ct5lp-hightpu-4t", "tpuTopology": "2x2"}
    assert pool["replicaCount"] == "1"
    assert pool["containerSpec"] == {
        "imageUri": f"repo/x/gemma-panel:{__version__}-tpu",
        "command": ["gemma-panel", "run", "/gcs/my-bucket/jobs/q1/recipe.yaml",
                    "--run-folder", "gs://my-bucket/jobs/q1"]}
    assert job["jobSpec"]["scheduling"] == {"timeout": "86400s", "strategy": "STANDARD"}
    assert job["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": "gs://my-bucket/jobs/q1"}


def test_dry_run_gpu_pool_on_spot(capsys):
    job = _dry_run(capsys, "--accelerator", "h100", "--spot", "--timeout-hours", "2")
    (pool,) = job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "a3-highgpu-8g",
                                   "acceleratorType": "NVIDIA_H100_80GB",
                                   "acceleratorCount": 8}
    assert pool["containerSpec"]["imageUri"] == f"gemma-panel:{__version__}-cuda"
    assert job["jobSpec"]["scheduling"] == {"timeout": "7200s", "strategy": "SPOT",
                                            "restartJobOnWorkerRestart": True}


def test_dry_run_sends_nothing_and_warns_about_local_data(capsys, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a dry run opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert main(["cloud", "submit", str(RECIPE), "--accelerator", "l4", "--output",
                 "gs://my-bucket/jobs", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "dry run, nothing sent" in err
    assert "examples/instruction/unit_conversions.jsonl is a local path" in err


def test_the_image_tag_is_the_project_version():
    import tomllib

    pyproject = tomllib.loads((RECIPE.parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__
    options = JobOptions("l4", "gs://b-1/jobs", image_repo="europe-docker/p/train")
    assert vertex.image_uri(options) == f"europe-docker/p/train/gemma-panel:{__version__}-cuda"


def test_job_states_map_to_run_statuses():
    from google.cloud import aiplatform_v1 as v1

    def job(state, message=""):
        return v1.CustomJob(state=v1.JobState[state], error={"message": message})

    assert vertex.status_of(job("JOB_STATE_PENDING")) == ("queued", None)
    assert vertex.status_of(job("JOB_STATE_RUNNING")) == ("running", None)
    assert vertex.status_of(job("JOB_STATE_SUCCEEDED")) == ("succeeded", None)
    assert vertex.status_of(job("JOB_STATE_CANCELLED")) == ("cancelled", None)
    assert vertex.status_of(job("JOB_STATE_FAILED", "OOM in replica 0")) == (
        "failed", "OOM in replica 0")


def test_submit_and_cancel_send_the_rest_calls(gcs, vertex_api, capsys):
    _, bucket = gcs
    bucket.blob("data/train.jsonl").upload_from_string(b'{"prompt": "a", "response": "b"}\n')
    recipe = load_recipe(RECIPE, [f"data.train_path=gs://{bucket.name}/data/train.jsonl"])
    options = JobOptions("tpu-v6e-8", f"gs://{bucket.name}/jobs", spot=True,
                         project="proj-1", region="europe-west4", job_id="j1")
    name, folder = vertex.submit(recipe, recipe_to_yaml(recipe), options)
    assert (name, folder) == ("projects/proj-1/locations/europe-west4/customJobs/1000",
                              f"gs://{bucket.name}/jobs/j1")
    method, path, body = vertex_api.calls[0]
    assert (method, path) == ("POST", "/v1/projects/proj-1/locations/europe-west4/customJobs")
    from google.cloud import aiplatform_v1 as v1

    sent = v1.CustomJob.from_json(json.dumps(body))  # the SDK writes enums as numbers
    assert sent == vertex.custom_job(recipe, options, folder)
    assert body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {
        "machineType": "ct6e-standard-8t", "tpuTopology": "2x4"}
    assert sent.job_spec.scheduling.strategy == v1.Scheduling.Strategy.SPOT
    uploaded = bucket.get_blob("jobs/j1/recipe.yaml").download_as_text()
    assert load_recipe_text(uploaded).data.train_path == f"gs://{bucket.name}/data/train.jsonl"
    assert vertex.get_status(name) == ("queued", None)
    assert main(["cloud", "cancel", name]) == 0
    assert vertex_api.calls[-1][:2] == ("POST", f"/v1/{name}:cancel")
    assert main(["cloud", "status", name]) == 0
    assert capsys.readouterr().out.strip().endswith("cancelled")


def load_recipe_text(text: str):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    return load_recipe(f.name)


def test_submit_refuses_local_data_before_any_call(vertex_api):
    options = JobOptions("l4", "gs://my-bucket/jobs", project="p")
    with pytest.raises(UserError, match="is on this machine, where a Vertex AI job cannot"):
        vertex.submit(load_recipe(RECIPE), "", options)
    assert vertex_api.calls == []


def test_a_restarted_replica_runs_a_command_that_resumes_from_the_job_folder(
        capsys, tmp_path, monkeypatch):
    """Spot jobs restart their replicas; each runs the spec's command, which our own parser
    takes as a run whose folder copy (and checkpoints to resume from) is the job's."""
    from gemma_panel import runs
    from gemma_panel.cli import build_parser
    from gemma_panel.runs import RunStore

    job = _dry_run(capsys, "--accelerator", "tpu-v5e-4", "--spot")
    assert job["jobSpec"]["scheduling"]["restartJobOnWorkerRestart"] is True
    command = job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["command"]
    assert command[:2] == ["gemma-panel", "run"]
    assert build_parser().parse_args(command[1:]).run_folder == "gs://my-bucket/jobs/q1"

    monkeypatch.setenv("GEMMA_PANEL_HOME", str(tmp_path))
    monkeypatch.setattr(runs, "submit", lambda recipe, store, trainer, remote_dir: (
        store.create_run(recipe, trainer=trainer, remote_dir=remote_dir)))
    monkeypatch.setattr(runs.store, "_check_cloud_data", lambda recipe, copy_to: None)
    local = [command[1], str(RECIPE), *command[3:], "--detach"]  # the recipe from here
    assert main(local) == 0
    (run,) = RunStore().list_runs()
    assert run.remote_dir == "gs://my-bucket/jobs/q1"


def test_the_output_prefix_defaults_to_the_recipes_storage(capsys, monkeypatch):
    monkeypatch.delenv("GEMMA_PANEL_CLOUD_OUTPUT", raising=False)
    assert main(["cloud", "submit", str(RECIPE), "train.storage=gs://b-2/runs", "--job-id",
                 "r1", "--accelerator", "l4", "--dry-run"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": "gs://b-2/runs/r1"}
