"""The SQLite schema of the run store, and how a connection to it is opened.

WAL mode lets any number of readers (dashboard tabs, notebooks, ``gemma-panel runs``) read
while a worker writes, and a reader only ever sees whole transactions: a step's metrics are
one transaction, so no reader sees half of them. ``synchronous=NORMAL`` makes a commit a
write to the WAL file without an fsync; a power cut can lose the last commits but never
corrupts the database, which is the trade every metrics logger makes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

SCHEMA_VERSION = 3


def _fill_models(conn: sqlite3.Connection) -> None:
    """Version 3's ``model`` of the runs already there: their recipe's ``model.source``."""
    for row in conn.execute("SELECT id, recipe_yaml FROM runs").fetchall():
        conn.execute("UPDATE runs SET model = ? WHERE id = ?",
                     (recipe_model(row[1]), row[0]))


def recipe_model(recipe_yaml: str) -> str | None:
    """The ``model.source`` a stored recipe names (None when it names none)."""
    try:
        data = yaml.safe_load(recipe_yaml or "") or {}
    except yaml.YAMLError:
        return None
    source = (data.get("model") or {}).get("source") if isinstance(data, dict) else None
    return str(source) if source else None


# What each version added to the one before: run in order on an older store's database. A
# step is an SQL statement or a function of the connection (filling a new column in).
MIGRATIONS: dict[int, list] = {
    2: [  # runs that train elsewhere (a Vertex AI job) and run folders kept on Cloud Storage
        "ALTER TABLE runs ADD COLUMN backend TEXT NOT NULL DEFAULT 'local'",
        "ALTER TABLE runs ADD COLUMN job_name TEXT",
        "ALTER TABLE runs ADD COLUMN remote_dir TEXT",
        "ALTER TABLE runs ADD COLUMN remote_cursor TEXT",
    ],
    3: [  # runs a user names, describes and tags; filtered by their model
        "ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE runs ADD COLUMN model TEXT",
        _fill_models,
    ],
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      REAL NOT NULL,
    queued_at       REAL NOT NULL,
    queue_pos       INTEGER NOT NULL,
    started_at      REAL,
    ended_at        REAL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    message         TEXT,
    log_tail        TEXT,
    trainer         TEXT NOT NULL,
    run_dir         TEXT NOT NULL,
    recipe_yaml     TEXT NOT NULL,
    worker_pid      INTEGER,
    worker_start    TEXT,
    worker_host     TEXT,
    heartbeat_at    REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    step            INTEGER NOT NULL DEFAULT 0,
    total_steps     INTEGER,
    tokens          INTEGER NOT NULL DEFAULT 0,
    checkpoint_step INTEGER,
    checkpoint_path TEXT,
    backend         TEXT NOT NULL DEFAULT 'local',
    job_name        TEXT,
    remote_dir      TEXT,
    remote_cursor   TEXT,
    notes           TEXT NOT NULL DEFAULT '',
    tags            TEXT NOT NULL DEFAULT '[]',
    model           TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, queue_pos);

CREATE TABLE IF NOT EXISTS metrics (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    step    INTEGER NOT NULL,
    tokens  INTEGER NOT NULL,
    name    TEXT NOT NULL,
    value   REAL,
    time    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, seq);

CREATE TABLE IF NOT EXISTS samples (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    step      INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    prompt    TEXT NOT NULL,
    reference TEXT,
    base      TEXT,
    tuned     TEXT,
    time      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_run ON samples (run_id, seq);

CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    time    REAL NOT NULL,
    kind    TEXT NOT NULL,
    message TEXT,
    data    TEXT
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, seq);

CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def connect(path: Path, timeout: float = 30.0) -> sqlite3.Connection:
    """Open (creating if needed) the store at ``path`` in WAL mode, schema in place.

    ``isolation_level=None``: no implicit transactions; writers say ``BEGIN IMMEDIATE`` so
    that two processes never both read-then-write the same rows (the queue relies on it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise RuntimeError(f"{path}: SQLite could not switch to WAL mode (got {mode}); "
                           "is the folder on a network file system? Put GEMMA_PANEL_HOME "
                           "on a local disk.")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        _upgrade(conn)
    elif version > SCHEMA_VERSION:
        raise RuntimeError(f"{path}: written by a newer gemma_panel (schema {version}); "
                           "upgrade gemma_panel to read it.")
    return conn


def _upgrade(conn: sqlite3.Connection) -> None:
    """Create the schema, or bring an older store's up to date, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process's upgrade
    if version == 0:  # a new database: the whole schema
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        version = SCHEMA_VERSION
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[step]:
            if callable(statement):
                statement(conn)
            else:
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")
