"""Every error a user can cause: one sentence on stderr, exit status 2, no traceback.

Each case goes through ``gemma_panel.cli.main``, the one error boundary; the worker and the
dashboard's jobs use the same classification (``gemma_panel.errors.as_user_error``).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gemma_panel.cli import main
from gemma_panel.errors import DatabaseLocked, UserError, as_user_error

QUICKSTART = """name: {name}
model:
  source: gemma3-270m
train:
  max_steps: 20
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMA_PANEL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def refused(argv: list[str], capsys) -> str:
    """Run the CLI; it must exit 2 with one line on stderr and no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gemma-panel: "), err
    return lines[0]


# -- recipes ------------------------------------------------------------------------------
def test_a_recipe_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    line = refused(["validate", str(path)], capsys)
    assert "not UTF-8" in line and "byte 0xe9" in line and str(path) in line


@pytest.mark.parametrize("value, words", [
    ("null", "name: must be set"),
    ("[a, b]", "name: expected str, got ['a', 'b']"),
    ("{x: 1}", "name: expected str"),
])
def test_a_name_that_is_not_text_fails_validate_not_run(tmp_path, capsys, value, words):
    path = tmp_path / "r.yaml"
    path.write_text(QUICKSTART.format(name=value))
    assert words in refused(["validate", str(path)], capsys)
    assert words in refused(["run", str(path), "--detach"], capsys)


def test_a_numeric_name_is_read_as_text_and_the_run_can_be_created(tmp_path, home, capsys):
    from gemma_panel.config import load_recipe
    from gemma_panel.runs import RunStore

    path = tmp_path / "r.yaml"
    path.write_text(QUICKSTART.format(name="123"))
    assert main(["validate", str(path)]) == 0
    recipe = load_recipe(path)
    assert recipe.name == "123"
    assert RunStore().create_run(recipe).id.startswith("123-")  # crashed on .lower() before


# -- data -----------------------------------------------------------------------------------
def test_data_check_with_an_unknown_encoding(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n')
    line = refused(["data", "check", "--encoding", "bogus", str(path)], capsys)
    assert "unknown encoding 'bogus'" in line and "cp1252" in line


def test_json_nested_past_the_recursion_limit_is_a_reported_problem(tmp_path, capsys):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"prompt": ' + "[" * 50_000 + "]" * 50_000 + ', "response": "b"}\n')
    assert main(["data", "check", str(path)]) == 1  # 'data check': the data has errors
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "line 1: nested deeper than the JSON reader can follow" in out


# -- the dashboard ----------------------------------------------------------------------------
def test_dashboard_on_a_port_in_use(capsys):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        started = time.perf_counter()
        line = refused(["dashboard", "--port", str(port)], capsys)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line
    assert time.perf_counter() - started < 5  # refused before the server is built


def test_python_m_ui_on_a_port_in_use_says_so_in_one_line():
    repo = Path(__file__).resolve().parents[1]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "gemma_panel.ui", "--port", str(port)],
                              cwd=repo, capture_output=True, text=True, timeout=120,
                              check=False)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line


def test_serve_dashboard_checks_the_port_before_serving():
    from gemma_panel.ports import PortUnavailable
    from gemma_panel.ui.serve import serve_dashboard

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(PortUnavailable, match=f"port {port} on 127.0.0.1 is already in use"):
            serve_dashboard(port, "127.0.0.1", threaded=True)  # a notebook's way in


def test_the_port_check_passes_a_free_port():
    from gemma_panel.ports import check_port_free

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_port_free("127.0.0.1", port)


# -- models -----------------------------------------------------------------------------------
def _hf_folder(folder, cut: int = 0):
    from safetensors.numpy import save_file

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (folder / "tokenizer.model").write_bytes(b"not read by this check")
    weights = folder / "model.safetensors"
    save_file({"w": np.zeros((64, 64), np.float32)}, str(weights))
    if cut:
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) - cut])
    return folder


def test_a_hugging_face_folder_with_truncated_safetensors(tmp_path, capsys):
    from gemma_panel.models.loader import resolve_source

    assert resolve_source(str(_hf_folder(tmp_path / "whole"))).kind == "hf"
    folder = _hf_folder(tmp_path / "cut", cut=1000)
    line = refused(["models", "prepare", str(folder)], capsys)
    assert "model.safetensors' is cut off" in line and "download" in line


def test_a_hugging_face_folder_with_a_broken_safetensors_header(tmp_path, capsys):
    folder = _hf_folder(tmp_path / "hf")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json]" +
                                               b"\x00" * 64)
    assert "damaged safetensors header" in refused(["models", "prepare", str(folder)], capsys)


# -- the run store ----------------------------------------------------------------------------
def test_a_run_store_locked_past_the_busy_timeout(home, capsys, monkeypatch):
    from gemma_panel.runs import RunStore, schema

    RunStore().close()  # the database exists
    monkeypatch.setattr(schema.connect, "__defaults__", (0.2,))  # a 0.2 s busy timeout
    holder = sqlite3.connect(home / "runs.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        line = refused(["runs", "parallel", "2"], capsys)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert f"the run store {home / 'runs.db'} stayed locked" in line and "fuser" in line


# -- exports ----------------------------------------------------------------------------------
def test_keras_int4_is_refused_before_anything_is_loaded(home, capsys):
    started = time.perf_counter()
    line = refused(["export", "no-such-run", "--format", "keras", "--quantize", "int4"],
                   capsys)
    assert "int4" in line and "--quantize int8" in line  # not "no run with id"
    assert time.perf_counter() - started < 5


# -- one classification ---------------------------------------------------------------------
def test_every_user_error_class_is_a_user_error_and_keeps_its_old_base():
    from gemma_panel.config import RecipeError
    from gemma_panel.data.report import DatasetError
    from gemma_panel.export.manifest import ExportError
    from gemma_panel.models.errors import ModelSourceError
    from gemma_panel.runs.store import RunNotFound, RunStateError
    from gemma_panel.training.trainer import TrainingError
    from gemma_panel.ui.uploads import UploadError

    for cls, old in ((RecipeError, ValueError), (DatasetError, ValueError),
                     (ModelSourceError, ValueError), (UploadError, ValueError),
                     (ExportError, RuntimeError), (TrainingError, RuntimeError),
                     (RunStateError, RuntimeError), (RunNotFound, LookupError)):
        assert issubclass(cls, UserError) and issubclass(cls, old), cls


def test_a_bug_keeps_its_traceback(monkeypatch):
    from gemma_panel.cli import models

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(models, "cmd_models_list", broken)
    with pytest.raises(ZeroDivisionError):
        main(["models", "list"])


def test_the_worker_classifies_by_type_not_by_class_name():
    from gemma_panel.runs.worker import _failure

    class TrainingError(RuntimeError):  # a bug that happens to share a user error's name
        pass

    class Refused(UserError):
        pass

    assert _failure(Refused("train.batch_size: too big")) == "train.batch_size: too big"
    assert _failure(TrainingError("oops")).startswith("the worker crashed (TrainingError")
    assert "stayed locked" in _failure(sqlite3.OperationalError("database is locked"))


def test_dashboard_jobs_use_the_same_classification(capsys):
    from gemma_panel.ui.jobs import Jobs

    jobs, seen = Jobs(), []

    def locked():
        raise sqlite3.OperationalError("database is locked")

    jobs.submit("locked", locked, seen.append, on_error=seen.append)
    jobs.submit("bug", lambda: 1 / 0, seen.append, on_error=seen.append)
    jobs.wait()
    assert isinstance(seen[0], DatabaseLocked) and "stayed locked" in str(seen[0])
    assert isinstance(seen[1], ZeroDivisionError)
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and "ZeroDivisionError" in err  # the bug's alone
    assert as_user_error(ValueError("not ours")) is None
