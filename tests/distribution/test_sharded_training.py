"""Sharded training on 8 host devices gives the one-device run's losses, laid out as planned.

One subprocess (``tests/distribution/sharded_run.py``) trains a tiny random Gemma 3 with LoRA for
5 steps under single, data_parallel, fsdp and model_parallel (batch 2 x model 4), through
the project's own jitted step on arrays placed by ``step_shardings``; these tests read its
report. JAX takes the device count from XLA_FLAGS once per process, hence the subprocess.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.distribution.host_devices import run_on_host_devices

DEVICES = 8


@pytest.fixture(scope="module")
def report():
    return run_on_host_devices("tests.distribution.sharded_run", DEVICES)


SHARDED = ["data_parallel", "fsdp", "model_parallel", "fsdp_pinned"]


@pytest.mark.parametrize("strategy", SHARDED)
def test_sharded_losses_equal_the_single_device_losses(report, strategy):
    single = report["single"]["losses"]
    assert len(set(single)) == len(single)  # every step sees new data and new weights
    assert report[strategy]["plan"] == strategy.removesuffix("_pinned")
    np.testing.assert_allclose(report[strategy]["losses"], single, rtol=1e-5)
    np.testing.assert_allclose(report[strategy]["eval"], report["single"]["eval"], rtol=1e-5)
    # what the 5 updates changed, summed over every LoRA factor
    assert report["single"]["learned"] > 0
    assert report[strategy]["learned"] == pytest.approx(report["single"]["learned"], rel=1e-5)


@pytest.mark.parametrize("strategy", ["single", *SHARDED])
def test_every_state_array_is_laid_out_as_the_layout_map_says(report, strategy):
    """As placed for the first step, and as the step returns it after the fifth."""
    specs = report[strategy]["specs"]
    wrong = {k: v for k, v in specs.items() if not v["placed"] == v["trained"] == v["layout"]}
    assert not wrong
    # weights (frozen), LoRA factors (trainable) and both Adam moments are all checked
    kinds = {key.split(":")[0] for key in specs}
    assert kinds == {"trainable", "frozen", "adam_mu", "adam_nu"}


def test_replicated_strategies_replicate_every_weight(report):
    for strategy in ("single", "data_parallel"):
        assert {v["placed"] for v in report[strategy]["specs"].values()} == {"()"}


def test_fsdp_splits_every_kernel_and_lora_factor_over_batch(report):
    specs = report["fsdp"]["specs"]
    assert specs["frozen:token_embedding/embeddings"]["placed"] == "(None, 'batch')"
    assert specs["frozen:decoder_block_0/attention/key/kernel"]["placed"] == "(None, 'batch')"
    unsplit = [k for k, v in specs.items() if "batch" not in v["placed"] and "norm" not in k]
    assert not unsplit


def test_model_parallel_replicates_the_single_key_value_head(report):
    """Gemma 3 270M has one key/value head: it cannot be split over 4 model shards."""
    specs = report["model_parallel"]["specs"]
    assert report["model_parallel"]["axis_sizes"] == {"batch": 2, "model": 4}
    assert specs["frozen:decoder_block_0/attention/query/kernel"]["placed"] == \
        "('model', 'batch')"
    assert specs["frozen:decoder_block_0/attention/key/kernel"]["placed"] == "(None, 'batch')"
    assert specs["frozen:decoder_block_1/ffw_gating/kernel"]["placed"] == "('batch', 'model')"
    assert specs["frozen:decoder_block_0/pre_ffw_norm/scale"]["placed"] == "()"


def test_fsdp_memory_per_device_drops_as_one_over_n(report):
    """XLA's compiled memory analysis: the step's arguments (weights, LoRA factors, Adam
    moments, batch) per device."""
    single = report["single"]["argument_bytes"]
    for fsdp in ("fsdp", "fsdp_pinned"):
        assert report[fsdp]["argument_bytes"] <= 1.25 * single / DEVICES
        assert report[fsdp]["output_bytes"] <= 1.25 * report["single"]["output_bytes"] / DEVICES
    # data parallelism splits only the batch: the model is whole on every device
    assert report["data_parallel"]["argument_bytes"] >= 0.9 * single


@pytest.mark.parametrize("move", ["fsdp->single", "single->fsdp"])
def test_a_checkpoint_resumes_on_another_mesh_with_equal_weights(report, move):
    """Checkpoints gather to host (training/checkpoint.py), so they carry no mesh: a run
    trained on 8 devices resumes on 1 and the reverse, placed for the new mesh."""
    assert report["resume"][move] == {"max_difference": 0.0, "laid_out_for_target": True}


def test_the_devices_report_counts_the_host_devices(report):
    devices = report["devices"]
    assert (devices["backend"], devices["count"], devices["local_count"]) == ("cpu", 8, 8)
    assert (devices["hosts"], devices["process_index"]) == (1, 0)
