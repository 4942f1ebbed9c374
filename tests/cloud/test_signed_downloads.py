"""Signed download links for exports whose files are on Cloud Storage, on the emulator.

gcp-storage-emulator serves ``GET /BUCKET/OBJECT`` (the path a V4 signed URL has) with the
object's bytes, but it checks neither the signature nor the expiry: that the signature is
right is checked with the key's public half in test_gcs_access.py. The links are signed with
a real service-account key made for the test.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import parse_qs, urlparse

import pytest

from gemma_panel.cloud import gcs as gcs_module
from gemma_panel.config import load_recipe
from gemma_panel.export.manifest import write_manifest
from gemma_panel.runs import RunStore
from gemma_panel.runs.statuses import RunStatus
from gemma_panel.ui.downloads import SIGNED_MINUTES, export_links

from .forbidden import EMAIL, service_account_key

WEIGHTS = b"adapter weights " * 512


@pytest.fixture
def signer(gcs, emulator, tmp_path, monkeypatch):
    """The dashboard's storage client on the emulator, keyed as the service account EMAIL
    (signing needs a key; nothing here asks a token server)."""
    from google.cloud import storage
    from google.oauth2 import service_account

    key = service_account_key(tmp_path / "key.json", "http://127.0.0.1:9/token")
    creds = service_account.Credentials.from_service_account_file(key)
    client = storage.Client(project="test-project", credentials=creds,
                            client_options={"api_endpoint": emulator})
    monkeypatch.setattr(gcs_module, "default_client", lambda: client)
    return client


def _export_on_gcs(bucket, tmp_path):
    """A Vertex AI run's export: its files in the job folder, its manifest brought back."""
    made = tmp_path / "made" / "lora-step000006"
    made.mkdir(parents=True)
    (made / "adapter.weights.h5").write_bytes(WEIGHTS)
    manifest = write_manifest(made, {"format": "lora", "verification": {"passed": True}})
    remote = f"gs://{bucket.name}/jobs/j1/exports/lora-step000006"
    for name in ("adapter.weights.h5", "manifest.json"):
        bucket.blob(f"jobs/j1/exports/lora-step000006/{name}").upload_from_filename(
            str(made / name))
    return remote, manifest


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()


def test_a_signed_url_is_v4_for_the_object_and_the_emulator_serves_it(gcs, signer,
                                                                      emulator, tmp_path):
    _, bucket = gcs
    remote, _ = _export_on_gcs(bucket, tmp_path)
    url = gcs_module.signed_url(f"{remote}/adapter.weights.h5", minutes=5)
    link = urlparse(url)
    assert f"{link.scheme}://{link.netloc}" == emulator
    assert link.path == f"/{bucket.name}/jobs/j1/exports/lora-step000006/adapter.weights.h5"
    query = parse_qs(link.query)
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == ["300"]
    assert query["X-Goog-Credential"][0].startswith(f"{EMAIL}/")
    assert query["X-Goog-SignedHeaders"] == ["host"]
    assert len(query["X-Goog-Signature"][0]) == 512  # RSA-2048, hex
    assert _fetch(url) == WEIGHTS


def test_the_export_tab_offers_signed_links_for_a_vertex_runs_export(gcs, signer,
                                                                     tmp_path):
    from gemma_panel.ui.export_model import ExportModel

    _, bucket = gcs
    _export_on_gcs(bucket, tmp_path)
    store = RunStore(tmp_path / "laptop")
    run = store.create_remote_run(load_recipe(None), backend="vertex",
                                  job_name="projects/p/locations/l/customJobs/1",
                                  remote_dir=f"gs://{bucket.name}/jobs/j1")
    store.follow_job(run.id, RunStatus("succeeded"), None)
    brought = store.folder(run.id).exports / "lora-step000006"
    brought.mkdir(parents=True)
    (brought / "manifest.json").write_bytes(
        bucket.blob("jobs/j1/exports/lora-step000006/manifest.json").download_as_bytes())

    model = ExportModel(store)
    assert model.run == run.id and model.shown == "lora-step000006"
    (label, url), (_, zip_url) = model.downloads  # one file, and the folder's zip
    assert zip_url == f"/download/{run.id}/exports/lora-step000006"  # made here (test_gcs_zip)
    assert label == f"adapter.weights.h5 (from Cloud Storage, link valid {SIGNED_MINUTES} min)"
    assert "X-Goog-Signature=" in url and _fetch(url) == WEIGHTS


def test_local_exports_keep_this_servers_links(tmp_path):
    folder = tmp_path / "runs" / "r1" / "exports" / "lora-step000002"
    folder.mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"x")
    manifest = write_manifest(folder, {"format": "lora"})
    links = export_links(tmp_path / "runs", folder, manifest, "gs://b-1/runs/r1/exports/x")
    assert links == [("a.bin", "/download/r1/exports/lora-step000002/a.bin"),
                     ("lora-step000002.zip (the whole folder)",
                      "/download/r1/exports/lora-step000002")]


def test_without_a_signing_identity_the_link_says_why(gcs, tmp_path):
    _, bucket = gcs  # the emulator's anonymous client: no key to sign with
    remote, manifest = _export_on_gcs(bucket, tmp_path)
    folder = tmp_path / "runs" / "r1" / "exports" / "lora-step000006"
    folder.mkdir(parents=True)
    (label, url), (_, zip_url) = export_links(tmp_path / "runs", folder, manifest, remote)
    assert url == "" and zip_url == "/download/r1/exports/lora-step000006"  # needs no key
    assert label.startswith(f"the files are in {remote}; anonymous")
    assert "cannot sign a download link" in label
