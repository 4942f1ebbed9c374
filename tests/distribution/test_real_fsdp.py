"""The issue's check on the real Gemma 3 270M: the quickstart recipe for 3 steps under
``fsdp`` over 8 host devices ends with the single device's losses (relative 1e-4)."""

from __future__ import annotations

import pytest

from tests.distribution.host_devices import run_on_host_devices

pytestmark = pytest.mark.slow


def test_the_real_270m_under_fsdp_gives_the_single_device_losses():
    runs = run_on_host_devices("tests.distribution.real_fsdp_run", 8, timeout=1800)
    single, fsdp = runs["single"], runs["fsdp"]
    assert single["end"] == fsdp["end"] == "succeeded"
    assert fsdp["logs"] == ["distribution: fsdp over 8 devices (batch 8, model 1)"]
    assert len(fsdp["losses"]) == len(single["losses"]) >= 3
    assert fsdp["losses"] == pytest.approx(single["losses"], rel=1e-4)
