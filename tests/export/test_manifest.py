"""Staging, manifests and request checks: no model needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gemma_panel.export.manifest import (
    ExportError,
    check_files,
    is_finished,
    staged_folder,
    write_manifest,
)
from gemma_panel.export.pipeline import check_request, default_folder_name


def test_a_clean_exit_moves_the_whole_folder_into_place(tmp_path):
    target = tmp_path / "exports" / "hf-step000004"
    with staged_folder(target) as folder:
        (folder / "model.bin").write_bytes(b"x" * 1000)
        assert not target.exists()  # nothing under the final name while writing
        write_manifest(folder, {"format": "hf", "verification": {"passed": True, "checks": []}})
    assert is_finished(target)
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["files"] == [{"path": "model.bin", "bytes": 1000,
                                  "sha256": manifest["files"][0]["sha256"]}]
    assert len(manifest["files"][0]["sha256"]) == 64
    assert check_files(target) == []
    (target / "model.bin").write_bytes(b"y" * 1000)
    assert check_files(target) == ["model.bin: checksum differs from the manifest"]
    assert [p.name for p in target.parent.iterdir()] == ["hf-step000004"]


def test_a_failure_leaves_nothing(tmp_path):
    target = tmp_path / "gguf-q8_0-step000004"
    with pytest.raises(RuntimeError, match="half way"), staged_folder(target) as folder:
        (folder / "model.gguf").write_bytes(b"GGUF" + b"\0" * 100)
        raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []


def finished_export(target, content="old"):
    with staged_folder(target) as folder:
        (folder / "model.keras").write_text(content)
        write_manifest(folder, {"format": "keras", "verification": {"passed": True,
                                                                    "checks": []}})
    return target


def test_a_finished_export_is_refused_without_force_and_replaced_when_complete(tmp_path):
    target = finished_export(tmp_path / "keras")
    with pytest.raises(ExportError, match="already exists and holds an export; pass --force"), \
            staged_folder(target):
        pytest.fail("no work may start when the folder exists")
    with pytest.raises(KeyboardInterrupt), staged_folder(target, overwrite=True) as folder:
        (folder / "new.txt").write_text("new")
        raise KeyboardInterrupt
    assert (target / "model.keras").read_text() == "old"  # a failed replacement keeps it
    with staged_folder(target, overwrite=True) as folder:
        (folder / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keras"]


@pytest.mark.parametrize("kind", ["folder", "file", "foreign manifest", "extra file"])
def test_force_never_replaces_what_is_not_a_finished_export(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("the user's")
        keep = target
    elif kind == "extra file":
        finished_export(target)
        keep = target / "notes.txt"
        keep.write_text("the user's")
    else:
        target.mkdir()
        keep = target / "manifest.json" if kind == "foreign manifest" else target / "notes.txt"
        keep.write_text('{"name": "my web app"}' if kind == "foreign manifest" else "the user's")
    before = keep.read_text()
    with pytest.raises(ExportError, match="is never replaced; choose another --out"), \
            staged_folder(target, overwrite=True):
        pytest.fail("refused before any work")
    assert keep.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_files_added_during_the_export_stop_the_replacement(tmp_path):
    target = finished_export(tmp_path / "keras")
    with pytest.raises(ExportError, match="did not write"), \
            staged_folder(target, overwrite=True) as folder:
        (folder / "model.keras").write_text("new")
        (target / "notes.txt").write_text("written while the export ran")
    assert (target / "notes.txt").read_text() == "written while the export ran"
    assert (target / "model.keras").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keras"]


def test_an_export_never_removes_other_files_beside_it(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_dir = tmp_path / f".partial-hf.pid{dead.stdout.strip()}.abc12345"
    live_dir = tmp_path / f".partial-gguf.pid{os.getppid()}.def12345"
    dead_dir.mkdir()
    live_dir.mkdir()
    users = [".partial-notes", ".partial-notes.txt", "notes.partial"]
    for name in users:
        (tmp_path / name).write_text("the user's")
    (tmp_path / ".partial-drafts").mkdir()  # a user's folder, whatever its name
    (tmp_path / ".partial-drafts" / "draft.txt").write_text("the user's")
    finished_export(tmp_path / "keras")
    assert not dead_dir.exists() and live_dir.exists()
    for name in [*users, ".partial-drafts/draft.txt"]:
        assert (tmp_path / name).read_text() == "the user's"


def test_unfinished_or_failed_folders_do_not_look_finished(tmp_path):
    (tmp_path / "a").mkdir()
    assert not is_finished(tmp_path / "a")
    (tmp_path / "b").mkdir()
    write_manifest(tmp_path / "b", {"verification": {"passed": False, "checks": []}})
    assert not is_finished(tmp_path / "b")


@pytest.mark.parametrize("fmt, quantize, merge, words", [
    ("onnx", None, True, "Unknown export format"),
    ("gguf", "q3_0", True, "not supported"),
    ("keras", "q4_0", True, "--format gguf"),
    ("hf", "int8", True, "--quantize applies"),
    ("hf", None, False, "need the LoRA merged"),
    ("gguf", None, False, "need the LoRA merged"),
])
def test_bad_requests_are_refused_in_words(fmt, quantize, merge, words):
    with pytest.raises(ExportError, match=words):
        check_request(fmt, quantize, merge)


def test_request_defaults():
    assert check_request("gguf", None, True) == "f16"
    assert check_request("gguf", "Q8_0", True) == "q8_0"
    assert check_request("lora", None, False) is None
    assert default_folder_name("gguf", "q4_0", 12) == "gguf-q4_0-step000012"
