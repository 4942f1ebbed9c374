"""A store written by an older gemma_panel (schema 1: before Vertex AI jobs; schema 2: before
names, notes and tags) opens and reads as before, upgraded in place."""

from __future__ import annotations

import sqlite3

import pytest

from gemma_panel.runs import RunStore
from gemma_panel.runs.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION


def added_after(version: int) -> set[str]:
    """The columns the migrations after ``version`` add (read from their ALTER statements)."""
    return {step.split()[5] for v, steps in MIGRATIONS.items() if v > version
            for step in steps if isinstance(step, str) and "ADD COLUMN" in step}


def old_schema(version: int) -> str:
    """SCHEMA as it was at ``version``: without the columns later versions added."""
    newer = added_after(version)
    lines = [line for line in SCHEMA.splitlines()
             if not (line.split() and line.split()[0] in newer)]
    text = "\n".join(lines)
    return text.replace("checkpoint_path TEXT,\n);", "checkpoint_path TEXT\n);").replace(
        "remote_cursor   TEXT,\n);", "remote_cursor   TEXT\n);")


def write_old_store(path, version: int, recipe_yaml: str = "") -> None:
    conn = sqlite3.connect(path / "runs.db")
    conn.executescript(old_schema(version))
    conn.execute("INSERT INTO runs (id, name, status, created_at, queued_at, queue_pos, "
                 "trainer, run_dir, recipe_yaml) VALUES ('r1', 'r', 'succeeded', 1, 1, 1, "
                 "'t', '/x', ?)", (recipe_yaml,))
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


def test_a_schema_1_store_is_upgraded_in_place(tmp_path):
    write_old_store(tmp_path, 1)
    store = RunStore(tmp_path)
    run = store.get("r1")
    assert (run.status, run.backend, run.job_name, run.remote_dir) == (
        "succeeded", "local", None, None)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    RunStore(tmp_path).get("r1")  # a second open finds nothing left to do


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_gains_notes_tags_and_each_run_s_model(tmp_path, version):
    write_old_store(tmp_path, version, "name: r\nmodel:\n  source: gemma3-270m\n")
    assert {"notes", "tags", "model"} <= added_after(version)
    store = RunStore(tmp_path)
    run = store.get("r1")
    assert (run.notes, run.tags, run.model) == ("", (), "gemma3-270m")
    assert [r.id for r in store.list_runs(model="gemma3")] == ["r1"]
    store.set_tags("r1", ["old"])
    assert [r.id for r in RunStore(tmp_path).list_runs(tag="old")] == ["r1"]
