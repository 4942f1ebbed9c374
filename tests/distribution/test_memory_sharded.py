"""int8 / bfloat16 base weights with remat train under fsdp on 8 host devices as on one.

One subprocess (``tests/distribution/memory_sharded_run.py``): the int8 kernels and their
scales, and the bfloat16 frozen arrays, are laid out by the same layout map as float32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_force_host_platform_device_count=8").strip()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "tests.distribution.memory_sharded_run"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setting", ["int8+remat", "bfloat16+remat"])
def test_fsdp_gives_the_single_device_losses(report, setting):
    single, fsdp = report[f"{setting}:single"], report[f"{setting}:fsdp"]
    np.testing.assert_allclose(fsdp["losses"], single["losses"], rtol=1e-5)
    assert fsdp["argument_bytes"] < single["argument_bytes"] / 4  # and the weights are split
