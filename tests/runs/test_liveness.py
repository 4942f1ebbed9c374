"""Telling a live worker from a dead one: pids, reused pids, zombies, silent heartbeats."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from gemma_panel.runs import statuses as st
from gemma_panel.runs.liveness import host_name, own_identity, process_alive, process_start_time
from tests.runs.conftest import fake_recipe


def test_this_process_is_alive_and_a_reaped_child_is_not():
    pid, start, host = own_identity()
    assert process_alive(pid, start, host) is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_alive(child.pid, None, host) is False


def test_a_zombie_counts_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(0.5)  # it has exited; we have not reaped it, so it is a zombie
    try:
        assert os.path.exists(f"/proc/{child.pid}")
        assert process_alive(child.pid, None, host_name()) is False
    finally:
        child.wait()


def test_a_reused_pid_is_told_apart_by_its_start_time():
    pid = os.getpid()
    assert process_alive(pid, str(int(process_start_time(pid)) + 1), host_name()) is False


def test_another_host_cannot_be_judged_by_pid():
    assert process_alive(os.getpid(), None, "some-other-host") is None


def _running(store, pid, start, host, heartbeat_age):
    run = store.create_run(fake_recipe())
    store.update_run(run.id, status=st.RUNNING, worker_pid=pid, worker_start=start,
                     worker_host=host, heartbeat_at=time.time() - heartbeat_age)
    store.folder(run.id).log_path.write_text("line 1\nTraceback: boom\n")
    return run


def test_dead_worker_makes_the_run_lost_with_the_cause_and_log_tail(store):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run = _running(store, child.pid, None, host_name(), heartbeat_age=0)
    got = store.get(run.id)  # reading is enough to notice
    assert got.status == st.LOST
    assert f"pid {child.pid}" in got.message and "resume" in got.message
    assert "Traceback: boom" in got.log_tail
    assert [e.message for e in store.events(run.id, kinds=["status"])][-1] == "lost"


def test_silent_heartbeat_on_another_host_makes_the_run_lost(store):
    quiet = _running(store, 123, None, "elsewhere", heartbeat_age=store.timings.lost_after_s + 1)
    fresh = _running(store, 123, None, "elsewhere", heartbeat_age=0)
    store.mark_lost()
    assert store.get(quiet.id).status == st.LOST
    assert store.get(fresh.id).status == st.RUNNING


def test_a_live_worker_keeps_its_run_running(store):
    pid, start, host = own_identity()
    run = _running(store, pid, start, host, heartbeat_age=1)
    assert store.mark_lost() == [] and store.get(run.id).status == st.RUNNING
