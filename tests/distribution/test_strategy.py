"""Resolving the recipe's distribution section into a mesh plan."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import pytest

from gemma_panel.distribution.strategy import (
    FIT_FRACTION,
    DistributionError,
    DistributionSection,
    resolve,
    section_problems,
)
from gemma_panel.errors import UserError

GIB = 2**30


def chips(count, memory=None):
    """Devices as resolve sees them: something with ``memory_stats()``."""
    stats = {"bytes_limit": memory} if memory else None
    return [SimpleNamespace(id=i, memory_stats=lambda: stats) for i in range(count)]


def test_auto_is_data_parallel_when_the_model_fits_one_device_and_fsdp_otherwise():
    small, big = int(FIT_FRACTION * 16 * GIB) - 1, int(FIT_FRACTION * 16 * GIB) + 1
    assert resolve("auto", chips(8, 16 * GIB), small).strategy == "data_parallel"
    plan = resolve("auto", chips(8, 16 * GIB), big)
    assert (plan.strategy, plan.axis_sizes) == ("fsdp", {"batch": 8, "model": 1})
    assert plan.shard_weights
    assert resolve("auto", chips(1, 16 * GIB), big).strategy == "single"
    # a CPU says nothing about its memory: the model is taken to fit
    assert resolve("auto", chips(8), 100 * GIB).strategy == "data_parallel"


def test_each_strategy_has_its_mesh_shape():
    assert resolve("single", chips(8), 0).axis_sizes == {"batch": 1, "model": 1}
    assert len(resolve("single", chips(8), 0).devices) == 1
    assert resolve("data_parallel", chips(8), 0).axis_sizes == {"batch": 8, "model": 1}
    assert not resolve("data_parallel", chips(8), 0).shard_weights
    assert resolve("model_parallel", chips(8), 0).axis_sizes == {"batch": 1, "model": 8}
    plan = resolve("model_parallel", chips(8), 0, {"batch": 2, "model": 4})
    assert plan.axis_sizes == {"batch": 2, "model": 4}
    assert resolve("fsdp", chips(8), 0, {"batch": 8}).axis_sizes == {"batch": 8, "model": 1}


@pytest.mark.parametrize(("strategy", "mesh", "words"), [
    ("fsdp", {"batch": 2, "model": 2}, "2 x model 2 = 4 devices, but 8 are here"),
    ("fsdp", {"batch": 8, "data": 1}, "unknown axis 'data'"),
    ("fsdp", {"batch": 0, "model": 8}, "whole numbers of at least 1"),
    ("data_parallel", {"batch": 2, "model": 4}, "model must be 1"),
    ("zero3", None, "'zero3' is not one of auto, single"),
])
def test_a_mesh_these_devices_cannot_form_is_a_user_error(strategy, mesh, words):
    with pytest.raises(DistributionError, match="^distribution.") as caught:
        resolve(strategy, chips(8), 0, mesh)
    assert words in str(caught.value)
    assert isinstance(caught.value, UserError)


def test_the_batch_size_must_split_over_the_batch_axis():
    plan = resolve("data_parallel", chips(8), 0)
    plan.check_batch_size(16)
    with pytest.raises(DistributionError, match="train.batch_size: 6 rows .* multiple of 8"):
        plan.check_batch_size(6)


def test_the_section_has_defaults_help_and_choices_like_every_recipe_section():
    import dataclasses

    section = DistributionSection()
    assert (section.strategy, section.mesh) == ("auto", None)
    fields = {f.name: f for f in dataclasses.fields(DistributionSection)}
    assert fields["strategy"].metadata["choices"] == (
        "auto", "single", "data_parallel", "fsdp", "model_parallel")
    assert all(len(f.metadata["help"]) > 80 for f in fields.values())


def test_the_plan_builds_jax_and_keras_meshes_over_its_devices():
    plan = resolve("single", jax.devices(), 0)
    mesh = plan.jax_mesh()
    assert mesh.axis_names == ("batch", "model") and mesh.devices.shape == (1, 1)
    assert plan.keras_mesh().shape == (1, 1)
    assert plan.summary() == "distribution: single over 1 device (batch 1, model 1)"


@pytest.mark.parametrize(("strategy", "mesh", "words"), [
    ("fsdp", {"batch": 8, "data": 1}, "unknown axis 'data'"),
    ("fsdp", {"batch": "8"}, "whole numbers"),
    ("fsdp", [8, 1], "a mapping of axis sizes"),
    ("single", {"batch": 2}, "single uses one device"),
    ("data_parallel", {"model": 2}, "model must be 1"),
])
def test_mesh_problems_are_found_without_devices_for_the_recipe_check(strategy, mesh, words):
    (problem,) = section_problems(DistributionSection(strategy, mesh))
    assert problem.startswith("distribution.mesh: ") and words in problem


def test_sound_sections_have_no_problems_and_auto_follows_a_mesh_that_splits_the_model():
    for strategy, mesh in [("auto", None), ("fsdp", {"batch": 4, "model": 2}),
                           ("single", {"batch": 1}), ("model_parallel", {})]:
        assert section_problems(DistributionSection(strategy, mesh)) == []
    plan = resolve("auto", chips(8), 0, {"batch": 2, "model": 4})
    assert (plan.strategy, plan.axis_sizes) == ("model_parallel", {"batch": 2, "model": 4})
    assert resolve("auto", chips(8), 0, {"batch": 8}).strategy == "data_parallel"
    with pytest.raises(DistributionError, match="unknown axis"):
        resolve("auto", chips(8), 0, {"rows": 8})
