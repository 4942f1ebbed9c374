"""Telling a live worker from a dead one: pids, reused pids, zombies, silent heartbeats."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from gemma_panel.processes import start_time
from gemma_panel.runs import statuses as st
from gemma_panel.runs.liveness import host_name, own_identity, process_alive
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
    assert process_alive(pid, str(int(start_time(pid)) + 1), host_name()) is False


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


def test_a_live_worker_is_never_lost_however_long_its_heartbeat_was_silent(store):
    # A suspended machine, a clock jump or a starved heartbeat thread: silence, not death.
    pid, start, host = own_identity()
    run = _running(store, pid, start, host, heartbeat_age=100 * store.timings.lost_after_s)
    assert store.mark_lost() == [] and store.get(run.id).status == st.RUNNING


def _unreadable_proc(monkeypatch):
    """/proc/PID/stat cannot be read (hidepid, a sandbox), as the kernel says so."""
    import builtins

    from gemma_panel import processes

    def refuse(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(processes, "open", refuse, raising=False)


def test_an_unreadable_proc_entry_is_unknown_not_dead(store, monkeypatch):
    pid, start, host = own_identity()
    _unreadable_proc(monkeypatch)
    assert process_alive(pid, start, host) is None
    run = _running(store, pid, start, host, heartbeat_age=0)
    assert store.mark_lost() == [] and store.get(run.id).status == st.RUNNING


def test_a_suspended_worker_keeps_its_run_and_finishes_it(store, monkeypatch):
    """SIGSTOP a real worker for longer than 10x the silence limit: its run stays running
    (its lock is held), even with /proc unreadable, and ends as it would have."""
    import signal

    from gemma_panel.runs import RunStore, Timings, submit
    from tests.runs.conftest import FAKE, wait_finished, wait_for

    monkeypatch.setenv("FAKE_STEP_S", "0.1")
    run = submit(fake_recipe("train.max_steps=30"), store, trainer=FAKE)
    running = wait_for(lambda: (r := store.get(run.id)).step >= 2 and r, what="two steps")
    strict = RunStore(store.root, Timings(heartbeat_s=0.25, lost_after_s=0.5))
    os.kill(running.worker_pid, signal.SIGSTOP)
    try:
        time.sleep(10 * strict.timings.lost_after_s + 1)
        assert strict.get(run.id).status == st.RUNNING
        with monkeypatch.context() as m:
            _unreadable_proc(m)
            assert strict.mark_lost() == [] and strict.get(run.id).status == st.RUNNING
    finally:
        os.kill(running.worker_pid, signal.SIGCONT)
    done = wait_finished(strict, run.id)
    assert done.status == st.SUCCEEDED and done.step == 30
    strict.close()
