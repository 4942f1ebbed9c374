"""The state machine is enforced by the store: a move it does not allow, or one asked for by
an attempt that is no longer the run's, changes nothing and leaves no event."""

from __future__ import annotations

import os

import pytest

from gemma_panel.runs import RunStateError
from gemma_panel.runs import statuses as st
from gemma_panel.runs.transitions import Turn, move
from tests.runs.conftest import fake_recipe

STORED = [s for s in st.RunStatus if s != st.STOPPED_EARLY]


def _status_events(store, run_id):
    return [(e.attempt, e.message) for e in store.events(run_id, kinds=["status"])]


@pytest.mark.parametrize("before", STORED)
def test_every_move_is_made_exactly_when_the_state_machine_allows_it(store, before):
    run = store.create_run(fake_recipe())
    for after in STORED:
        store.update_run(run.id, status=before)
        events = _status_events(store, run.id)
        with store.write() as conn:
            moved = move(conn, run.id, 0, after, message="moved")
        allowed = after in st.MOVES[before]
        assert moved == allowed, f"{before} -> {after}"
        got = store.get(run.id)
        assert got.status == (after if allowed else before), f"{before} -> {after}"
        assert _status_events(store, run.id)[len(events):] == ([(0, after)] if allowed else [])


def test_a_succeeded_run_refuses_the_worker_the_queue_and_the_user(store):
    run = store.create_run(fake_recipe())
    store.update_run(run.id, status=st.SUCCEEDED, message="done")
    events = _status_events(store, run.id)
    identity = (os.getpid(), "start", os.uname().nodename)
    store.update_run(run.id, worker_pid=identity[0])
    assert store.finish(run.id, 0, st.FAILED, "late") is False
    assert store.beat(run.id, 0) is False
    assert store.take_turn(run.id, identity, lambda: True) == Turn.GONE
    assert store.register_waiter(run.id, identity) is False
    with pytest.raises(RunStateError, match="is succeeded; only failed, cancelled and lost"):
        store.requeue(run.id)
    assert store.request_cancel(run.id).status == st.SUCCEEDED
    with store.write() as conn:  # nor may anything else: a succeeded run stays succeeded
        assert not any(move(conn, run.id, 0, to) for to in STORED)
    got = store.get(run.id)
    assert (got.status, got.message, got.cancel_requested) == (st.SUCCEEDED, "done", False)
    assert _status_events(store, run.id) == events


def test_a_lost_run_is_not_cancelled_and_a_worker_cannot_end_as_lost(store):
    run = store.create_run(fake_recipe())
    store.update_run(run.id, status=st.LOST)
    assert store.request_cancel(run.id).status == st.LOST  # a queued run's cancel only
    with pytest.raises(ValueError, match="cannot end as"):
        store.finish(run.id, 0, st.LOST)
    assert store.finish(run.id, 0, st.SUCCEEDED, "alive after all") is True


def test_a_superseded_attempt_cannot_beat_or_record_how_it_ended(store):
    run = store.create_run(fake_recipe())
    store.update_run(run.id, status=st.LOST)
    assert store.requeue(run.id).attempt == 1
    store.update_run(run.id, status=st.RUNNING)  # the new attempt's worker trains
    events = _status_events(store, run.id)
    assert store.beat(run.id, 0) is False
    assert store.finish(run.id, 0, st.FAILED, "the old worker crashed") is False
    got = store.get(run.id)
    assert (got.status, got.message, got.attempt) == (st.RUNNING, None, 1)
    assert _status_events(store, run.id) == events
    assert store.beat(run.id, 1) is True
    assert store.finish(run.id, 1, st.SUCCEEDED) is True
    assert store.get(run.id).status == st.SUCCEEDED
    assert _status_events(store, run.id)[-1] == (1, st.SUCCEEDED)
