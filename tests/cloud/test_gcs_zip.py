"""A Vertex AI run's export, its files on Cloud Storage, downloaded from the dashboard as one
zip streamed as it is made: on gcp-storage-emulator, the zip's files checksummed against the
export's manifest, through the dashboard's real /download handler (Tornado, on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import threading
import urllib.error
import urllib.request
import zipfile

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.export.manifest import write_manifest
from gemma_panel.runs import RunStore
from gemma_panel.runs.statuses import RunStatus
from gemma_panel.ui.downloads import download_patterns, download_url, export_links, folder_zip

from .fixtures import free_port

WEIGHTS = os.urandom(3 * (1 << 20) + 12345)  # several chunks, not a whole number of them
NAME = "lora-step000006"


@pytest.fixture
def laptop(gcs, tmp_path):
    """A laptop's store with a finished Vertex AI run whose export is on the bucket; its
    local export folder holds what runs.mirror brings back: the manifest and README."""
    _, bucket = gcs
    made = tmp_path / "made" / NAME
    (made / "assets").mkdir(parents=True)
    (made / "adapter.weights.h5").write_bytes(WEIGHTS)
    (made / "assets" / "tokenizer.model").write_bytes(b"spm " * 1000)
    (made / "README.md").write_text("# the export\n")
    manifest = write_manifest(made, {"format": "lora", "verification": {"passed": True}})
    for path in made.rglob("*"):
        if path.is_file():
            rel = path.relative_to(made).as_posix()
            bucket.blob(f"jobs/j1/exports/{NAME}/{rel}").upload_from_filename(str(path))
    store = RunStore(tmp_path / "laptop")
    run = store.create_remote_run(load_recipe(None), backend="vertex",
                                  job_name="projects/p/locations/l/customJobs/1",
                                  remote_dir=f"gs://{bucket.name}/jobs/j1")
    store.follow_job(run.id, RunStatus("succeeded"), None)
    folder = store.folder(run.id).exports / NAME
    folder.mkdir(parents=True)
    for name in ("manifest.json", "README.md"):
        (folder / name).write_bytes((made / name).read_bytes())
    return store, folder, manifest


def _checked(data: bytes, manifest: dict, folder) -> None:
    archive = zipfile.ZipFile(io.BytesIO(data))
    sums = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert {n: hashlib.sha256(archive.read(n)).hexdigest() for n in sums} == sums
    assert set(archive.namelist()) == {*sums, "manifest.json"}
    assert json.loads(archive.read("manifest.json")) == manifest
    assert archive.read("README.md") == (folder / "README.md").read_bytes()


def test_the_zip_of_an_export_on_gcs_streams_in_chunks_and_matches_the_manifest(laptop):
    store, folder, manifest = laptop
    chunk = 256 << 10
    parts = [p for p in folder_zip(store.runs_root, folder, chunk=chunk) if p]
    assert len(parts) > len(WEIGHTS) // chunk  # sent as it is read, not at the end
    assert max(len(p) for p in parts) <= chunk + 4096  # no part holds more than a chunk
    _checked(b"".join(parts), manifest, folder)


def test_the_export_tab_offers_the_zip_beside_the_files(laptop, gcs):
    store, folder, manifest = laptop
    links = export_links(store.runs_root, folder, manifest, f"gs://{gcs[1].name}/jobs/j1/"
                         f"exports/{NAME}")
    label = f"{NAME}.zip (the whole folder, read from Cloud Storage by this dashboard)"
    assert links[-1] == (label, download_url(store.runs_root, folder))


@pytest.fixture
def dashboard_downloads(laptop):
    """The dashboard's /download route (download_patterns) served on 127.0.0.1."""
    from tornado.web import Application

    store = laptop[0]
    port, ready, box = free_port(), threading.Event(), {}

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        box["server"] = Application(download_patterns(store.runs_root, login=False)).listen(
            port, address="127.0.0.1")
        box["loop"] = loop
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{port}"
    box["loop"].call_soon_threadsafe(box["server"].stop)
    box["loop"].call_soon_threadsafe(box["loop"].stop)
    thread.join(10)


def test_the_download_route_sends_the_zip_of_an_export_on_gcs(laptop, dashboard_downloads,
                                                              gcs):
    store, folder, manifest = laptop
    url = dashboard_downloads + download_url(store.runs_root, folder)
    with urllib.request.urlopen(url, timeout=60) as answer:
        assert answer.headers["Content-Type"] == "application/zip"
        assert NAME + ".zip" in answer.headers["Content-Disposition"]
        data = answer.read()
    _checked(data, manifest, folder)
    gcs[1].blob(f"jobs/j1/exports/{NAME}/adapter.weights.h5").delete()
    with pytest.raises(urllib.error.HTTPError) as refused:  # refused before any byte
        urllib.request.urlopen(url, timeout=60)
    assert refused.value.code == 403
