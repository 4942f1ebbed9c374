"""int8 / bfloat16 base weights with remat train under fsdp on 8 host devices as on one.

One subprocess (``tests/distribution/memory_sharded_run.py``): the int8 kernels and their
scales, and the bfloat16 frozen arrays, are laid out by the same layout map as float32.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.distribution.host_devices import run_on_host_devices


@pytest.fixture(scope="module")
def report():
    return run_on_host_devices("tests.distribution.memory_sharded_run", 8)


@pytest.mark.parametrize("setting", ["int8+remat", "bfloat16+remat"])
def test_fsdp_gives_the_single_device_losses(report, setting):
    single, fsdp = report[f"{setting}:single"], report[f"{setting}:fsdp"]
    np.testing.assert_allclose(fsdp["losses"], single["losses"], rtol=1e-5)
    assert fsdp["argument_bytes"] < single["argument_bytes"] / 4  # and the weights are split
