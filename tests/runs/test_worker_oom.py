"""A run that dies of memory exhaustion ends ``failed: out of memory`` with the plan's
remedies, not a bare traceback: MemoryError, XLA's RESOURCE_EXHAUSTED, the OOM killer."""

from __future__ import annotations

from gemma_panel.runs import out_of_memory, submit
from gemma_panel.runs import statuses as st
from tests.runs.conftest import fake_recipe, wait_finished, wait_for

OOM = "tests.runs.oom_trainer:train"


def _remedy_named(message: str) -> bool:
    """The message names a change to make: a recipe field with its new value."""
    return "1) train.batch_size=" in message and "gradient_accumulation" in message


def test_a_memory_error_fails_the_run_as_out_of_memory_with_remedies(store):
    done = wait_finished(store, submit(fake_recipe(name="memoryerror"), store,
                                       trainer=OOM).id, timeout=90)
    assert done.status == st.FAILED, done.message
    assert done.message.startswith("out of memory (MemoryError)"), done.message
    assert _remedy_named(done.message), done.message
    assert "crashed" not in done.message


def test_xla_resource_exhausted_fails_the_run_as_out_of_memory_with_remedies(store):
    done = wait_finished(store, submit(fake_recipe(name="xla"), store, trainer=OOM).id,
                         timeout=90)
    assert done.status == st.FAILED, done.message
    assert done.message.startswith("out of memory (JaxRuntimeError: RESOURCE_EXHAUSTED: "
                                   "Out of memory while trying to allocate"), done.message
    assert _remedy_named(done.message), done.message


def test_a_worker_killed_while_its_oom_kill_counter_rose_fails_as_out_of_memory(
        store, monkeypatch):
    """The kernel's counter is read by the worker at its start (really) and by the store when
    it finds the worker gone; here the store's reading is one kill higher, as after an OOM
    kill in the worker's cgroup (a real one would take the machine's memory)."""
    run = submit(fake_recipe(name="sigkill"), store, trainer=OOM)
    wait_for(lambda: store.get(run.id).status == st.RUNNING, timeout=60, what="running")
    wait_for(lambda: out_of_memory._read(store.folder(run.id).path /
                                         out_of_memory.BASELINE_NAME).get("devices"),
             timeout=60, what="the devices in the baseline")
    real = out_of_memory.oom_kill_counts
    monkeypatch.setattr(out_of_memory, "oom_kill_counts",
                        lambda: {f: n + 1 for f, n in real().items()})
    done = wait_finished(store, run.id, timeout=60)
    assert done.status == st.FAILED, done.message
    assert done.message.startswith("out of memory (the kernel's OOM killer ended the worker "
                                   "with SIGKILL: oom_kill in "), done.message
    assert _remedy_named(done.message), done.message  # worked out now, from recipe.yaml


def test_a_killed_worker_whose_counters_did_not_move_stays_lost(store):
    run = submit(fake_recipe(name="sigkill"), store, trainer=OOM)
    done = wait_finished(store, run.id, timeout=90)
    assert done.status == st.LOST and "stopped without a word" in done.message


def test_only_out_of_memory_errors_are_taken_for_it():
    from jax.errors import JaxRuntimeError

    assert out_of_memory.is_out_of_memory(MemoryError())
    assert out_of_memory.is_out_of_memory(JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory"))
    assert not out_of_memory.is_out_of_memory(JaxRuntimeError("INVALID_ARGUMENT: shapes"))
    assert not out_of_memory.is_out_of_memory(ValueError("out of range"))
