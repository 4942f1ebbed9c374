"""The Export tab's model (choices, command line, verification table) and the downloads.

Fast: runs, checkpoints and exports are written straight into a private store; the export
process is the CLI's command line (checked as built) or, for ``poll``, a small stand-in
child that writes a manifest. The real export, through the browser, is in
test_export_tab_browser.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.export.manifest import write_manifest
from gemma_panel.ui.downloads import (
    DownloadRefused,
    confine_download,
    download_patterns,
    download_url,
    iter_zip,
)
from gemma_panel.ui.export_model import ExportModel, check_rows, quantize_choices
from tests.ui.conftest import free_port
from tests.ui.test_bindings import _read_only

CHECKS = [
    {"name": "keras_logits_match", "passed": True, "detail": "max diff 0.001",
     "max_abs_diff": 0.0012345, "tolerance": 0.01},
    {"name": "gguf_carries_lora", "passed": False, "detail": "too close", "margin": 0.5,
     "bound": 1.25},
    {"name": "file_size", "passed": True, "measured": True, "detail": "12 MB", "bytes": 12},
]


def _run(store, name="tiny", steps=(2, 4), best=2, status="succeeded"):
    run = store.create_run(load_recipe(None, [f"name={name}"]))
    for step in steps:
        folder = Path(run.run_dir) / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True)
        # The trainer records the best step in each checkpoint's meta.json.
        (folder / "meta.json").write_text(json.dumps({"best_step": best}))
        store.record_checkpoint(run.id, 0, step, str(folder), best=step == best)
    store.update_run(run.id, status=status)
    return store.get(run.id)


def _export(run, name="gguf-f16-step000004", checks=CHECKS, passed=False) -> Path:
    folder = Path(run.run_dir) / "exports" / name
    (folder / "sub").mkdir(parents=True)
    (folder / "model.gguf").write_bytes(bytes(range(256)) * 5000)
    (folder / "sub" / "README.md").write_text("# loading\n")
    write_manifest(folder, {"format": "gguf", "quantize": "f16", "source": {"step": 4},
                            "verification": {"passed": passed, "checks": checks}})
    return folder


def test_choices_follow_the_store_the_run_and_the_format(store):
    _run(store, "running", status="running")
    _run(store, "no-checkpoint", steps=())
    done = _run(store, "done")
    m = ExportModel(store)
    assert m.param.run.objects == [done.id] and m.run == done.id
    assert m.param.checkpoint.objects == ["latest", "best", "step 4", "step 2"]
    assert m.step() == 4
    m.checkpoint = "best"
    assert m.step() == 2
    assert m.quantize == "f16" and "q8_0" in m.param.quantize.objects
    m.fmt = "keras"
    assert m.param.quantize.objects == ["none", "int8", "int4"] and m.quantize == "none"
    m.fmt = "hf"
    assert quantize_choices("hf") == ["none"] and m.quantize == "none"
    _read_only(m, status="x", log="x", checks=[{"x": 1}], manifest={"x": 1}, busy=True)


def test_the_command_line_is_the_clis_export(store):
    run = _run(store)
    m = ExportModel(store)
    m.param.update(fmt="gguf", quantize="q8_0", checkpoint="step 2")
    assert m.command()[1:] == [
        "-m", "gemma_panel", "export", str(run.run_dir), "--format", "gguf", "--step", "2",
        "--out", str(Path(run.run_dir) / "exports" / "gguf-q8_0-step000002"),
        "--quantize", "q8_0"]
    m.param.update(fmt="lora", replace=True)
    assert m.command()[-3:] == ["--out", str(Path(run.run_dir) / "exports" / "lora-step000002"),
                                "--force"]
    # The CLI accepts what the tab builds (argparse only: nothing is exported).
    from gemma_panel.cli import build_parser
    args = build_parser().parse_args(m.command()[3:])
    assert (args.format, args.step, args.force) == ("lora", 2, True)


def test_the_verification_table_has_each_check_its_measure_and_bound():
    rows = check_rows({"verification": {"checks": CHECKS}})
    assert [(r["check"], r["result"], r["measured"], r["bound"]) for r in rows] == [
        ("keras_logits_match", "passed", 0.001234, 0.01),
        ("gguf_carries_lora", "FAILED", 0.5, 1.25),
        ("file_size", "measured", 12, None)]


def test_exports_are_listed_with_checks_manifest_and_download_links(store):
    run = _run(store)
    folder = _export(run, passed=True)
    m = ExportModel(store)
    assert [(e["export"], e["format"], e["step"], e["verified"]) for e in m.exports] == [
        (folder.name, "gguf", 4, True)]
    assert m.shown == folder.name and m.manifest["files"][0]["path"] == "model.gguf"
    assert [r["check"] for r in m.checks] == [c["name"] for c in CHECKS]
    urls = dict(m.downloads)
    assert urls["model.gguf"] == f"/download/{run.id}/exports/{folder.name}/model.gguf"
    assert urls[f"{folder.name}.zip (the whole folder)"].endswith(f"/exports/{folder.name}")


STAND_IN = """import json, pathlib, sys
out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True); (out / "m.bin").write_bytes(b"x")
print("loading " + "the run", flush=True)  # (split: the log's first line is the command)
(out / "manifest.json").write_text(json.dumps({"format": "lora", "files": [],
    "verification": {"passed": True, "checks": [{"name": "c", "passed": True}]}}))
print("verified: " + "1 checks passed", flush=True)
"""


def test_poll_shows_the_output_lines_then_the_verified_export(store, monkeypatch):
    run = _run(store)
    m = ExportModel(store)
    m.fmt = "lora"
    out = m.out_folder()
    monkeypatch.setattr(m, "command", lambda: [sys.executable, "-c", STAND_IN, str(out)])
    m.start()
    assert m.busy
    deadline = time.monotonic() + 30
    while m.busy and time.monotonic() < deadline:
        m.poll()
        time.sleep(0.05)
    assert not m.busy and m.status == f"Exported and verified: {out.name}."
    assert "loading the run" in m.log and "verified: 1 checks passed" in m.log
    assert m.shown == out.name and m.checks[0]["check"] == "c"
    assert [e["export"] for e in m.exports] == [out.name] and run.id in str(out)


def test_stop_interrupts_the_export_and_keeps_nothing(store, monkeypatch):
    _run(store)
    m = ExportModel(store)
    out = m.out_folder()
    partial = out.parent / ".partial-x"
    script = ("import pathlib, sys, time\np = pathlib.Path(sys.argv[1]); p.mkdir(parents=True)\n"
              "print('sta' + 'rted', flush=True)\ntry:\n    time.sleep(60)\n"
              "except KeyboardInterrupt:\n    p.rmdir(); sys.exit(130)\n")
    monkeypatch.setattr(m, "command", lambda: [sys.executable, "-c", script, str(partial)])
    m.start()
    deadline = time.monotonic() + 30
    while "started" not in m.log.split("\n")[-1] and time.monotonic() < deadline:
        m.poll()
        time.sleep(0.05)
    m.stop()
    deadline = time.monotonic() + 30  # the stop's own time, on a loaded machine too
    while m.busy and time.monotonic() < deadline:
        m.poll()
        time.sleep(0.05)
    assert not m.busy and m.status.startswith("Stopped; nothing was kept.")
    assert not partial.exists()  # interrupted as Ctrl-C does, so it cleaned up after itself


# -- downloads -------------------------------------------------------------------------------


def test_a_folder_streams_as_a_zip_whose_bytes_match_the_manifest(store):
    folder = _export(_run(store))
    parts = list(iter_zip(folder, chunk=64 * 1024))
    assert len(parts) > 5 and max(len(p) for p in parts) < 200 * 1024  # streamed in pieces
    archive = zipfile.ZipFile(io.BytesIO(b"".join(parts)))
    manifest = json.loads(archive.read("manifest.json"))
    for entry in manifest["files"]:
        assert hashlib.sha256(archive.read(entry["path"])).hexdigest() == entry["sha256"]
    assert sorted(archive.namelist()) == ["manifest.json", "model.gguf", "sub/README.md"]


def test_only_paths_inside_the_run_store_are_served(store, tmp_path):
    folder = _export(_run(store))
    root = store.runs_root
    assert confine_download(root, download_url(root, folder).split("/", 2)[2]) == folder
    (tmp_path / "secret.txt").write_text("no")
    (folder / "link").symlink_to(tmp_path / "secret.txt")
    for rel in ("../runs.db", "../../secret.txt", f"{folder.relative_to(root)}/link", "",
                "/etc/passwd"):
        with pytest.raises(DownloadRefused):
            confine_download(root, rel)


@pytest.fixture
def download_server(store):
    """The download route alone in a Tornado server on a thread; yields (base url, login)."""
    import asyncio

    import tornado.web

    port, ready, holder = free_port(), threading.Event(), {}

    def serve(login):
        async def main():
            app = tornado.web.Application(download_patterns(store.runs_root, login))
            holder["server"] = app.listen(port, address="127.0.0.1")
            holder["stop"] = asyncio.Event()
            ready.set()
            await holder["stop"].wait()
        holder["loop"] = asyncio.new_event_loop()
        holder["loop"].run_until_complete(main())

    def start(login=False):
        threading.Thread(target=serve, args=(login,), daemon=True).start()
        ready.wait(10)
        return f"http://127.0.0.1:{port}"
    yield start
    if "stop" in holder:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)


def _get(url, cookie=None):
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, b""


def test_the_route_serves_files_and_zips_and_refuses_the_rest(store, download_server):
    folder = _export(_run(store))
    base = download_server()
    manifest = json.loads((folder / "manifest.json").read_text())
    code, headers, body = _get(base + download_url(store.runs_root, folder / "model.gguf"))
    assert code == 200 and "model.gguf" in headers["Content-Disposition"]
    assert hashlib.sha256(body).hexdigest() == manifest["files"][0]["sha256"]
    code, headers, body = _get(base + download_url(store.runs_root, folder))
    assert code == 200 and zipfile.ZipFile(io.BytesIO(body)).read("model.gguf") == \
        (folder / "model.gguf").read_bytes()
    assert _get(base + "/download/..%2Fruns.db")[0] == 403
    assert _get(base + "/download/nothing-here")[0] == 404


def test_the_route_asks_for_the_login_when_the_dashboard_has_one(store, download_server,
                                                                 monkeypatch):
    from panel.config import config
    from tornado.web import create_signed_value

    monkeypatch.setattr(config, "cookie_secret", "the-servers-secret")
    folder = _export(_run(store))
    base = download_server(login=True)
    url = base + download_url(store.runs_root, folder / "model.gguf")
    assert _get(url)[0] == 403
    forged = create_signed_value("another-secret", "user", "me").decode()
    assert _get(url, cookie=f"user={forged}")[0] == 403
    signed = create_signed_value("the-servers-secret", "user", "me").decode()
    assert _get(url, cookie=f"user={signed}")[0] == 200
