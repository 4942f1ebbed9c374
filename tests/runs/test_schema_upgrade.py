"""A store written before runs could be Vertex AI jobs (schema 1) opens and reads as before."""

from __future__ import annotations

import sqlite3

from gemma_panel.runs import RunStore
from gemma_panel.runs.schema import SCHEMA, SCHEMA_VERSION

NEW_COLUMNS = ("backend", "job_name", "remote_dir", "remote_cursor")


def test_a_schema_1_store_is_upgraded_in_place(tmp_path):
    old = "\n".join(line for line in SCHEMA.splitlines()
                    if line.split() and line.split()[0] not in NEW_COLUMNS)
    old = old.replace("checkpoint_path TEXT,", "checkpoint_path TEXT")
    conn = sqlite3.connect(tmp_path / "runs.db")
    conn.executescript(old)
    conn.execute("INSERT INTO runs (id, name, status, created_at, queued_at, queue_pos, "
                 "trainer, run_dir, recipe_yaml) VALUES ('r1', 'r', 'succeeded', 1, 1, 1, "
                 "'t', '/x', '')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = RunStore(tmp_path)
    run = store.get("r1")
    assert (run.status, run.backend, run.job_name, run.remote_dir) == (
        "succeeded", "local", None, None)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    RunStore(tmp_path).get("r1")  # a second open finds nothing left to do
