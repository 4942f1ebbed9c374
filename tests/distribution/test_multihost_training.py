"""One recipe trained by two JAX processes (jax.distributed on 127.0.0.1, gloo collectives)
equals one process training the same global batch, and only process 0 writes the run.

Two processes x 1 CPU device, ``data_parallel`` over both: each process places only its
half of every batch. The run is cancelled after step 2 (process 0 alone is asked) and
resumed (process 0 alone is told to; its checkpoint is on its own disk only), so the
losses of the two halves and the final LoRA weights must match one process's 4 steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.distribution.processes import run_processes, run_single
from tests.distribution.trainer_run import recipe

SCRIPT = "tests.distribution.multihost_run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared")
    recipe(shared)  # the tiny model and data, written once before any process reads them
    hosts = [tmp_path_factory.mktemp(f"host{i}") for i in range(2)]
    two = run_processes(SCRIPT, lambda i: [str(shared), str(hosts[i]), "data_parallel"],
                        processes=2, devices=1, timeout=600)
    one = run_single(SCRIPT, [str(shared), str(tmp_path_factory.mktemp("one")), "single",
                              "full"], devices=1, timeout=600)
    return {"two": two, "one": {**one["full"], "fed": one["fed"]}}


def test_both_processes_joined_one_mesh(runs):
    assert [r["processes"] for r in runs["two"]] == [[2, 0, 2], [2, 1, 2]]


def test_each_process_feeds_only_its_half_of_every_batch(runs):
    """(accumulation 1, batch 8, length 48) global batches; 4 rows from each process."""
    for process in runs["two"]:
        assert process["fed"] == [[[1, 4, 48], [1, 8, 48]]]
    assert runs["one"]["fed"] == []  # one process places its batches whole


def test_two_processes_train_as_one_on_the_same_global_batch(runs):
    one = runs["one"]
    for process in runs["two"]:
        cancelled, resumed = process["cancelled"], process["resumed"]
        assert (cancelled["status"], cancelled["step"]) == ("cancelled", 2)
        assert (resumed["status"], resumed["step"]) == ("succeeded", 4)
        weights = [np.array(w) for w in resumed["weights"]]
        expected = [np.array(w) for w in one["weights"]]
        assert len(weights) == len(expected) > 0
        for got, want in zip(weights, expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    primary = runs["two"][0]
    losses = primary["cancelled"]["losses"] + primary["resumed"]["losses"]
    assert len(one["losses"]) == 4
    assert losses == pytest.approx(one["losses"], rel=1e-5)
    val = primary["cancelled"]["val"] + primary["resumed"]["val"]
    assert val == pytest.approx(one["val"], rel=1e-5)


def test_only_process_zero_writes_the_run(runs):
    primary, other = runs["two"]
    assert "run/checkpoints/step-000004/state.npz" in primary["files"]
    assert "run/checkpoints/step-000002/meta.json" in primary["files"]
    assert {"run/recipe.yaml", "run/base_samples.json"} <= set(primary["files"])
    assert other["files"] == []
    assert other["cancelled"]["losses"] == other["resumed"]["losses"] == []  # no events
    assert other["resumed"]["end"] is None
