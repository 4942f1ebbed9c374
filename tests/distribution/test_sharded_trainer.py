"""The real trainer under ``distribution.strategy`` on 8 host devices: fsdp and data
parallel end with the single device's losses and weights, the run's log says where it ran,
and a run cancelled on 8 devices resumes on one to the same end."""

from __future__ import annotations

import pytest

from tests.distribution.host_devices import run_on_host_devices


@pytest.fixture(scope="module")
def runs():
    return run_on_host_devices("tests.distribution.trainer_run", 8, timeout=600)


@pytest.mark.parametrize("strategy", ["fsdp", "data_parallel"])
def test_a_sharded_run_ends_with_the_single_device_losses(runs, strategy):
    single, sharded = runs["single"], runs[strategy]
    assert sharded["end"] == single["end"] == "succeeded"
    assert len(sharded["losses"]) == len(single["losses"]) >= 4
    assert sharded["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert sharded["val"] == pytest.approx(single["val"], rel=1e-5)
    assert sharded["weights"] == pytest.approx(single["weights"], rel=1e-5)


def test_the_state_is_laid_out_on_the_mesh_while_it_trains(runs):
    assert runs["single"]["layout"] == {"devices": 1, "split": False}
    assert runs["data_parallel"]["layout"] == {"devices": 8, "split": False}  # replicated
    assert runs["fsdp"]["layout"] == {"devices": 8, "split": True}


def test_the_run_log_names_the_devices_and_the_mesh(runs):
    assert any(line.startswith("devices: 8 x cpu") for line in runs["fsdp"]["logs"])
    assert "distribution: fsdp over 8 devices (batch 8, model 1)" in runs["fsdp"]["logs"]
    assert "distribution: single over 1 device (batch 1, model 1)" in runs["single"]["logs"]


def test_a_run_cancelled_on_eight_devices_resumes_on_one_to_the_same_end(runs):
    moved, single = runs["fsdp_then_single"], runs["single"]
    assert moved["end"] == "succeeded"
    assert moved["losses"] == pytest.approx(single["losses"][-len(moved["losses"]):], rel=1e-5)
    assert moved["weights"] == pytest.approx(single["weights"], rel=1e-5)
