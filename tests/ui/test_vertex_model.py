"""The "Run on Vertex AI" panel's view model: plan first, submit on confirm, the CLI's job.

The real SDK's REST client talks to the loopback JobService (tests/cloud/vertex_server.py)
and the recipe upload goes to gcp-storage-emulator, as in tests/cloud; the recipe is the
tiny model's, its data on the emulated bucket.
"""

# ruff: noqa: F811 - the cloud fixtures (gcs, vertex_api) are imported by name
from __future__ import annotations

import re
import time

import pytest

from gemma_panel.cli import main
from gemma_panel.cloud.estimate import job_estimate
from gemma_panel.config import load_recipe, recipe_to_yaml
from gemma_panel.planning.prices import load_prices
from gemma_panel.ui import ConfigModel, RunsModel
from gemma_panel.ui.vertex_model import VertexModel
from tests.cloud.fixtures import emulator, gcs, vertex_api  # noqa: F401 - fixtures, by name
from tests.ui.conftest import UNIT_CONVERSIONS, tiny_overrides


@pytest.fixture
def job_recipe(gcs, tiny_gguf, tmp_path, monkeypatch):
    """The tiny model's recipe with its data on the emulated bucket, as a YAML file."""
    _, bucket = gcs
    bucket.blob("d/train.jsonl").upload_from_filename(str(UNIT_CONVERSIONS))
    monkeypatch.delenv("GEMMA_PANEL_CLOUD_OUTPUT", raising=False)
    recipe = load_recipe(None, ["name=tiny-vertex", *tiny_overrides(tiny_gguf, 20),
                                f"data.train_path=gs://{bucket.name}/d/train.jsonl"])
    path = tmp_path / "tiny-vertex.yaml"
    path.write_text(recipe_to_yaml(recipe))
    return path


def _panel(store, recipe_path, **settings) -> VertexModel:
    runs = RunsModel(store)
    config = ConfigModel(load_recipe(recipe_path), jobs=runs.jobs)
    return VertexModel(runs, config, **settings)


def _created(server) -> list[dict]:
    return [body for method, path, body in server.calls
            if method == "POST" and path.endswith("/customJobs")]


def _planned(panel: VertexModel) -> VertexModel:
    panel.show_plan()
    panel.jobs.wait(timeout=120)
    return panel


@pytest.mark.parametrize("accelerator, spot, replicas", [
    ("tpu-v5e-4", False, 1), ("h100", True, 1), ("a100", False, 2)])
def test_the_panel_submits_the_clis_job_and_shows_the_clis_cost(
        store, job_recipe, gcs, vertex_api, monkeypatch, capsys, accelerator, spot, replicas):
    _, bucket = gcs
    monkeypatch.setenv("GEMMA_PANEL_HOME", str(store.root))
    options = ["--accelerator", accelerator, *(["--spot"] if spot else []), "--project", "p1",
               "--output", f"gs://{bucket.name}/jobs", "--job-id", "j1",
               "--replicas", str(replicas)]
    assert main(["cloud", "submit", str(job_recipe), *options, "--yes"]) == 0
    printed = capsys.readouterr().out
    (cli_body,) = _created(vertex_api)
    cli_recipe = bucket.blob("jobs/j1/recipe.yaml").download_as_text()
    bucket.blob("jobs/j1/recipe.yaml").delete()  # the panel's job goes to the same folder

    panel = _planned(_panel(store, job_recipe, accelerator=accelerator, spot=spot,
                            replicas=replicas, project="p1",
                            output=f"gs://{bucket.name}/jobs", job_id="j1"))
    assert panel.can_submit, panel.status
    assert len(_created(vertex_api)) == 1  # the plan sends nothing
    assert bucket.get_blob("jobs/j1/recipe.yaml") is None
    # The plan is the lines the CLI printed before it asked, memory fit and cost included.
    assert "\n".join(panel.plan_lines) in printed
    assert re.search(r"memory: [0-9.]+ GiB of [0-9]+ GiB per device \(\w+ over \d+\): "
                     r"(FITS|TIGHT|DOES NOT FIT)", printed)
    assert panel.fit["badge"] in ("fits", "tight", "does not fit")
    assert any(line.startswith("  cost: ~$") for line in panel.plan_lines), printed
    expected = job_estimate(load_recipe(job_recipe), accelerator, spot, load_prices(),
                            replicas)
    assert panel.cost_usd == expected.cost.usd and panel.cost_usd > 0

    panel.confirm()
    panel.jobs.wait(timeout=120)
    first, second = _created(vertex_api)
    assert second == cli_body == first
    assert bucket.blob("jobs/j1/recipe.yaml").download_as_text() == cli_recipe
    assert panel.job_json and f"gs://{bucket.name}/jobs/j1" in panel.job_json


def test_the_job_is_listed_as_a_run_and_cancel_cancels_the_job(store, job_recipe, gcs,
                                                               vertex_api):
    _, bucket = gcs
    panel = _planned(_panel(store, job_recipe, accelerator="l4", project="p1",
                            output=f"gs://{bucket.name}/jobs"))
    folder = panel.planned.folder
    panel.confirm()
    panel.jobs.wait(timeout=120)
    runs = panel.runs
    run = store.get(panel.submitted)
    assert run.remote_dir == folder and run.job_name.startswith("projects/p1/locations/")
    assert runs.selected == run.id
    assert [r["status"] for r in runs.runs if r["id"] == run.id] == ["queued"]
    assert f"as run {run.id}" in panel.status and "Train tab" in panel.status
    assert runs.can_cancel
    vertex_api.answer_cancel.clear()  # Vertex AI is slow to answer the cancel call
    began = time.monotonic()
    runs.cancel()  # the Train tab's button, on the page's thread
    assert time.monotonic() - began < 2, "the cancel call waited on the page's thread"
    assert not runs.can_cancel and runs.notice == f"Cancelling the job of {run.id} ..."
    runs.refresh_status()  # the page's periodic refresh while the call is still out
    assert not runs.can_cancel, "the Cancel button came back during the slow cancel"
    vertex_api.answer_cancel.set()
    runs.jobs.wait(timeout=60)
    assert ("POST", f"/v1/{run.job_name}:cancel", None) in [
        (m, p, b or None) for m, p, b in vertex_api.calls]
    assert store.get(run.id).status == "cancelled"
    assert runs.status == "cancelled"  # the Train tab tells it (its notice is cleared)


def test_nothing_is_sent_without_a_plan_for_the_settings_shown(store, job_recipe, gcs,
                                                               vertex_api):
    _, bucket = gcs
    panel = _panel(store, job_recipe, accelerator="l4", project="p1",
                   output=f"gs://{bucket.name}/jobs")
    panel.confirm()  # no plan yet
    assert "Show the plan first" in panel.status and "vertex-submit" not in panel.jobs.running
    _planned(panel)
    assert panel.can_submit
    panel.spot = True  # the plan shown was for on-demand
    assert not panel.can_submit and panel.plan_lines == [] and panel.cost_usd is None
    panel.confirm()
    panel.jobs.wait()
    _planned(panel)
    panel.config.set("train.max_steps", 40)  # so was it for the old recipe
    assert not panel.can_submit
    panel.confirm()
    panel.jobs.wait()
    panel.show_plan()
    panel.region = "europe-west4"  # while the plan for us-central1 is being made
    panel.jobs.wait(timeout=120)
    assert not panel.can_submit and panel.plan_lines == [] and not panel.busy
    panel.confirm()
    panel.jobs.wait()
    assert _created(vertex_api) == [] and store.list_runs() == []
    assert list(bucket.list_blobs(prefix="jobs/")) == []


def test_user_errors_are_one_sentence_with_the_next_step(store, job_recipe, gcs, vertex_api,
                                                         monkeypatch, tmp_path):
    _, bucket = gcs
    panel = _panel(store, job_recipe, accelerator="l4", project="p1")
    _planned(panel)  # no bucket named anywhere
    assert panel.status.startswith("no bucket for the job: enter a gs://BUCKET/PATH")
    panel.output = "gs://no-such-bucket-here/jobs"
    _planned(panel)
    assert "the bucket no-such-bucket-here does not exist" in panel.status
    assert "gcloud storage buckets create" in panel.status
    panel.output = f"gs://{bucket.name}/jobs"
    gs_data = panel.config.settings["data.train_path"]
    panel.config.set("data.train_path", str(UNIT_CONVERSIONS))
    _planned(panel)
    assert panel.status.startswith(f"{UNIT_CONVERSIONS} is on this machine, where a Vertex "
                                   "AI job cannot read it: copy it to a bucket")
    panel.config.set("data.train_path", gs_data)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    panel.project = ""
    _planned(panel)
    assert panel.status.startswith("no Google Cloud project for the job: enter it under "
                                   "'Project'")
    # No credentials: not the emulator, and a key file that is not there.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    from gemma_panel.cloud import gcs as gcs_module

    monkeypatch.setattr(gcs_module, "_CLIENTS", {})
    panel.project = "p1"
    _planned(panel)
    assert panel.status.startswith("no Google Cloud credentials found: run 'gcloud auth "
                                   "application-default login'"), panel.status
    assert not panel.can_submit and _created(vertex_api) == []
