"""The chat worker process through the dashboard's client: load once, stop, idle, death."""

from __future__ import annotations

import os
import signal
import time

from gemma_panel.chat import ChatClient
from tests.chat.tiny_run import STEP

QUESTION = [["user", "How many grams are in a kilogram?"]]


def _request(run_dir, **options) -> dict:
    return {"run_dir": str(run_dir), "step": STEP, "system": "", "options": options,
            "conversations": {"base": QUESTION, "tuned": QUESTION}}


def _until(reply, predicate, timeout: float = 120.0) -> list[dict]:
    """Collect the reply's events until ``predicate(events)`` holds."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while not predicate(events):
        assert time.monotonic() < deadline, events[-5:]
        events += reply.events()
        time.sleep(0.02)
    return events


def test_the_worker_streams_stops_midway_reuses_its_models_and_quits_when_idle(tuned_run):
    client = ChatClient(idle_s=1.0)
    reply = client.chat(_request(tuned_run, max_new_tokens=2000))
    events = _until(reply, lambda ev: sum(e["event"] == "piece" for e in ev) >= 10)
    client.stop(reply)
    assert reply.wait(60)
    events += reply.events()
    assert any(e["event"] == "status" and "Loading" in e["text"] for e in events)
    ends = {e["side"]: e for e in events if e["event"] == "end"}
    assert set(ends) == {"base", "tuned"}
    assert all(e["stopped"] and 0 < e["tokens"] < 2000 for e in ends.values()), ends
    pid = client.worker_pid

    again = client.chat(_request(tuned_run, max_new_tokens=8))
    assert again.wait(60)
    events = again.events()
    assert not any(e["event"] == "status" for e in events)  # the models were kept
    assert [e["tokens"] for e in events if e["event"] == "end"] == [8, 8]
    assert client.worker_pid == pid
    deadline = time.monotonic() + 30
    while client.worker_pid is not None or _alive(pid):  # idle for idle_s: it quits
        assert time.monotonic() < deadline, "the idle worker did not quit"
        time.sleep(0.1)


def test_a_worker_that_dies_ends_its_requests_with_a_sentence(tuned_run):
    client = ChatClient(idle_s=60)
    reply = client.chat(_request(tuned_run, max_new_tokens=2000))
    os.kill(client.worker_pid, signal.SIGKILL)  # while it starts: out of memory, say
    assert reply.wait(30)
    errors = [e["text"] for e in reply.events() if e["event"] == "error"]
    assert errors and "chat worker stopped" in errors[0] and "again" in errors[0]
    assert client.worker_pid is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
