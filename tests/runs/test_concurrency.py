"""Many processes on one store: readers never see a torn row; a crash leaves it consistent."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys

from gemma_panel.runs import RunStore
from tests.runs.conftest import REPO, fake_recipe
from tests.runs.store_procs import check_snapshot


def _proc(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.runs.store_procs", *map(str, args)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)


def test_readers_in_other_processes_never_see_a_torn_row(store):
    run = store.create_run(fake_recipe())
    readers = [_proc("reader", store.root, run.id, 4) for _ in range(2)]
    for reader in readers:
        assert reader.stdout.readline().strip() == "ready"
    writer = _proc("writer", store.root, run.id, 1000)
    writer_out, _ = writer.communicate(timeout=120)
    reports = [json.loads(r.communicate(timeout=60)[0]) for r in readers]
    assert writer.returncode == 0 and writer_out.split()[-1] == "1000"
    for report in reports:
        assert report["torn"] == []
        assert report["reads"] > 10 and report["sizes"] > 2  # they really read mid-write
    assert check_snapshot(store, run.id) == (1000, [])


def test_a_store_killed_mid_write_opens_consistent_with_its_wal(tmp_path):
    root = tmp_path / "crashed"
    crasher = _proc("crasher", root)
    run_id = crasher.stdout.readline().strip()
    for _ in range(5):  # let it commit 50 steps, then kill it mid-stream
        crasher.stdout.readline()
    crasher.send_signal(signal.SIGKILL)
    crasher.wait()
    assert (root / "runs.db-wal").stat().st_size > 0  # the crash left the log un-merged

    store = RunStore(root)
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    steps, problems = check_snapshot(store, run_id)
    assert problems == [] and steps >= 50
    # and it is writable again: a new step lands after the last whole one
    from gemma_panel.runs import StoreSink

    with StoreSink(store, run_id) as sink:
        sink.on_metrics(steps + 1, (steps + 1) * 7, {f"m{i}": float(steps + 1) for i in range(10)})
    assert check_snapshot(store, run_id) == (steps + 1, [])
    plain = sqlite3.connect(root / "runs.db")  # any SQLite client reads it too
    assert plain.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 10 * (steps + 1)
