"""The real trainer under ``distribution.strategy`` on 8 host devices: fsdp and data
parallel end with the single device's losses and weights, the run's log says where it ran,
and a run cancelled on 8 devices resumes on one to the same end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_force_host_platform_device_count=8").strip()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "tests.distribution.trainer_run"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


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
