"""Sharded LoRA training of tiny Gemma 4s (dense, mixture of experts) on 8 host devices gives
the one-device run's losses, with every weight laid out by the Gemma 4 rules of layouts.py.

One subprocess (``tests/distribution/gemma4_sharded_run.py``) trains each for 5 steps on one
device and under fsdp, and lays the mixture of experts out under model_parallel (batch 4 x
model 2, the experts split by expert); these tests read its report.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.distribution.host_devices import run_on_host_devices

VARIANTS = ["dense", "moe"]
SHARDED = [("dense", "fsdp"), ("moe", "fsdp")]


@pytest.fixture(scope="module")
def report():
    return run_on_host_devices("tests.distribution.gemma4_sharded_run", 8)


@pytest.mark.parametrize(("variant", "strategy"), SHARDED)
def test_sharded_gemma4_losses_equal_the_single_device_losses(report, variant, strategy):
    runs = report[variant]
    single = runs["single"]["losses"]
    assert len(set(single)) == len(single) == 5  # every step sees new data and new weights
    assert runs[strategy]["plan"] == strategy
    np.testing.assert_allclose(runs[strategy]["losses"], single, rtol=1e-5)
    assert runs["single"]["learned"] > 0
    assert runs[strategy]["learned"] == pytest.approx(runs["single"]["learned"], rel=1e-5)


@pytest.mark.parametrize(("variant", "strategy"),
                         [("dense", "single"), ("moe", "single"), *SHARDED,
                          ("moe", "model_parallel")])
def test_every_gemma4_state_array_is_laid_out_as_the_layout_map_says(report, variant, strategy):
    """As placed for the first step, and as the step returns it after the fifth."""
    specs = report[variant][strategy]["specs"]
    wrong = {k: v for k, v in specs.items() if not v["placed"] == v["trained"] == v["layout"]}
    assert not wrong
    assert {key.split(":")[0] for key in specs} == {"trainable", "frozen", "adam_mu", "adam_nu"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_fsdp_splits_every_gemma4_matrix_and_its_moments_over_batch(report, variant):
    """Kernels, experts, router, LoRA factors and both Adam moments; vectors stay whole."""
    ndim = report[variant]["ndim"]
    specs = report[variant]["fsdp"]["specs"]
    unsplit = [k for k, v in specs.items()
               if ndim[k.split(":", 1)[1]] >= 2 and "batch" not in v["placed"]]
    assert not unsplit
    assert {v["placed"] for k, v in specs.items() if ndim[k.split(":", 1)[1]] < 2} == {"()"}


def test_model_parallel_splits_the_experts_by_expert(report):
    """Two experts per model shard; the router whole over model; heads as in Gemma 1-3."""
    specs = report["moe"]["model_parallel"]["specs"]
    block = "frozen:decoder_block_1"
    assert specs[f"{block}/moe_expert_bank/gate_proj"]["placed"] == "('model', 'batch')"
    assert specs[f"{block}/moe_expert_bank/down_proj"]["placed"] == "('model', None, 'batch')"
    assert specs[f"{block}/moe_router/proj/kernel"]["placed"] == "('batch',)"
    assert specs[f"{block}/attention/query/kernel"]["placed"] == "('model', 'batch')"
    # a LoRA factor and its moments: model where the kernel has it, batch on the free rank
    assert specs["adam_mu:decoder_block_1/ffw_gating/lora_kernel_b"]["placed"] == \
        "('batch', 'model')"
