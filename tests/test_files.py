"""gemma_panel.files and gemma_panel.processes: atomic writes, partials and their clean-up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gemma_panel import files, processes


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_partial_name_says_who_wrote_it():
    name = files.partial_name("model.gguf")
    assert name.startswith(".partial-model.gguf.pid")
    pid, started = files.partial_writer(name)
    assert pid == os.getpid()
    assert started == processes.start_time(os.getpid())
    if os.path.isdir("/proc/self"):
        assert started is not None
    assert files.partial_name("x") != files.partial_name("x")


@pytest.mark.parametrize("name", [
    ".partial-notes", ".partial-notes.txt", ".partial-", "notes.partial", "model.gguf",
    ".partial-x.pid12", ".partial-x.pid12.toolongtoken", ".partial-x.pid0.abcd1234",
    "partial-x.pid12.abcd1234", ".partial-x.pidNaN.abcd1234",
])
def test_names_our_code_does_not_write_are_not_partials(name):
    assert files.partial_writer(name) is None


def test_only_our_partials_of_dead_writers_are_removed(tmp_path):
    gone = dead_pid()
    me, my_start = os.getpid(), processes.start_time(os.getpid())
    dead_dir = tmp_path / f".partial-hf.pid{gone}.abc_defg"      # an older release's name
    dead_file = tmp_path / f".partial-hashes.json.pid{gone}-123.0a1b2c3d"
    live_dir = tmp_path / f".partial-gguf.pid{os.getppid()}.def45678"
    mine = tmp_path / files.partial_name("step-000004")
    dead_dir.mkdir()
    (dead_dir / "model.bin").write_bytes(b"x")
    dead_file.write_text("{}")
    live_dir.mkdir()
    mine.mkdir()
    reused = None
    if my_start is not None:  # this pid, but a start time of another process: a reused pid
        reused = tmp_path / f".partial-old.pid{me}-{int(my_start) + 1}.00000000"
        reused.mkdir()
    users = [".partial-notes", ".partial-notes.txt", "notes.partial", "train.jsonl",
             f".partial-x.pid{gone}", f"partial-x.pid{gone}.abcd1234"]
    for name in users:
        (tmp_path / name).write_text("the user's")
    (tmp_path / ".partial-drafts").mkdir()
    (tmp_path / ".partial-drafts" / "draft.txt").write_text("the user's")
    users.append(".partial-drafts/draft.txt")

    removed = files.remove_dead_partials(tmp_path)

    expected = sorted([dead_dir, dead_file] + ([reused] if reused else []))
    assert sorted(removed) == expected
    assert not any(p.exists() for p in expected)
    assert live_dir.is_dir() and mine.is_dir()
    for name in users:
        assert (tmp_path / name).read_text() == "the user's"


def test_a_writer_that_cannot_be_checked_is_kept(tmp_path, monkeypatch):
    gone = dead_pid()
    partial = tmp_path / f".partial-hf.pid{gone}-99.abcd1234"
    partial.mkdir()
    monkeypatch.setattr(files, "is_running", lambda pid, started: None)
    assert files.remove_dead_partials(tmp_path) == []
    assert partial.is_dir()


def test_is_running_tells_a_reused_pid():
    me = os.getpid()
    assert processes.is_running(me) is True
    assert processes.is_running(dead_pid()) is False
    started = processes.start_time(me)
    if started is None:
        pytest.skip("no /proc: start times cannot be read here")
    assert processes.is_running(me, started) is True
    assert processes.is_running(me, str(int(started) + 1)) is False


def test_write_atomic_leaves_the_old_file_on_a_failure(tmp_path, monkeypatch):
    path = tmp_path / "hashes.json"
    files.write_json_atomic(path, {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        files.write_atomic(path, "half")
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["hashes.json"]


def test_a_staged_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "step-000004"
    with pytest.raises(KeyboardInterrupt), files.staged_folder(target) as folder:
        (folder / "state.npz").write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with files.staged_folder(target) as folder:
        (folder / "state.npz").write_bytes(b"whole")
        assert not target.exists()
    assert (target / "state.npz").read_bytes() == b"whole"
    with pytest.raises(FileExistsError), files.staged_folder(target):
        pytest.fail("no work may start when the target exists and replace is False")
    with files.staged_folder(target, replace=True) as folder:
        (folder / "state.npz").write_bytes(b"new")
    assert (target / "state.npz").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["step-000004"]


def test_before_replace_refuses_and_keeps_the_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    def refuse(path):
        raise ValueError(f"{path.name} is not ours")

    with pytest.raises(ValueError, match="not ours"), \
            files.staged_folder(target, replace=True, before_replace=refuse):
        pytest.fail("refused before any work")
    assert (target / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_hashes_and_safe_names(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    assert files.sha256_of(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert files.safe_name("../../My data (v2)") == "My_data_v2"
    assert files.safe_name("..\\..\\.hidden") == "hidden"
    assert files.safe_name("...", default="upload") == "upload"
    assert files.same_file(path, tmp_path / "." / "a.bin")
    assert not files.same_file(path, tmp_path / "missing")
