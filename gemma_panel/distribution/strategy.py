"""How a run spreads over devices: the recipe's ``distribution`` section and its resolution.

Every strategy is one device mesh with two named axes, ``batch`` and ``model``, and the
Gemma layout map of layouts.py; they differ only in the mesh's shape and in whether the
weights follow the layout map:

    single          1 device, mesh (1, 1)
    data_parallel   N devices, mesh (N, 1): the batch is split over ``batch``, weights are
                    replicated, XLA all-reduces the gradients
    fsdp            N devices, mesh (N, 1): the batch and every weight, LoRA factor and
                    optimizer moment are split over ``batch`` (XLA gathers weights per use)
    model_parallel  mesh (1, N) unless given: weights split over ``model`` (attention heads,
                    feed-forward units, vocabulary), and over ``batch`` where it is > 1

This is KerasHub's convention (``GemmaBackbone.get_layout_map`` shards over both axes), so
fsdp and model parallelism are one layout on differently shaped meshes.

Example:
    >>> plan = resolve("auto", jax.devices(), model_bytes=1 << 30)
    >>> plan.strategy, plan.axis_sizes
    ('data_parallel', {'batch': 8, 'model': 1})
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# The recipe section and its device-free checks live with the schema; re-exported here.
from gemma_panel.config.schema import AXES, STRATEGIES, DistributionSection  # noqa: F401
from gemma_panel.config.validation import mesh_problem, section_problems  # noqa: F401
from gemma_panel.distribution.devices import device_memory
from gemma_panel.errors import UserError

# A model "fits" one device when its weights take at most this share of the device's
# memory: the rest holds gradients, optimizer moments, activations and XLA's temporaries
# A rule of thumb until the planning issue estimates memory per recipe.
FIT_FRACTION = 0.5


class DistributionError(UserError, ValueError):
    """A distribution setting that cannot work on these devices, with what would."""


@dataclass
class MeshPlan:
    """A resolved strategy: the devices, the mesh shape, and whether weights are sharded."""

    strategy: str
    axis_sizes: dict[str, int]
    devices: list = field(repr=False)

    @property
    def shard_weights(self) -> bool:
        return self.strategy in ("fsdp", "model_parallel")

    def jax_mesh(self):
        import jax

        shape = tuple(self.axis_sizes[a] for a in AXES)
        return jax.sharding.Mesh(np.array(self.devices).reshape(shape), AXES)

    def keras_mesh(self):
        import keras

        shape = tuple(self.axis_sizes[a] for a in AXES)
        return keras.distribution.DeviceMesh(shape, list(AXES), np.array(self.devices))

    def check_batch_size(self, batch_size: int) -> None:
        """Raise a DistributionError unless ``train.batch_size`` splits over ``batch``."""
        n = self.axis_sizes["batch"]
        if batch_size % n:
            raise DistributionError(
                f"train.batch_size: {batch_size} rows cannot be split evenly over the {n} "
                f"devices of the batch axis; use a multiple of {n} (e.g. "
                f"{n * max(1, round(batch_size / n))}) or set distribution.mesh")

    def summary(self) -> str:
        sizes = ", ".join(f"{a} {n}" for a, n in self.axis_sizes.items())
        n = len(self.devices)
        return f"distribution: {self.strategy} over {n} device{'s' * (n != 1)} ({sizes})"


def fits_one_device(model_bytes: int, memory: int | None) -> bool:
    """Whether the weights leave room to train on one device; unknown memory (CPU) fits."""
    return memory is None or model_bytes <= FIT_FRACTION * memory


def resolve(strategy: str, devices, model_bytes: int, mesh: dict | None = None) -> MeshPlan:
    """The mesh for a strategy on these devices (``auto`` chosen from the model's size).

    Args:
        strategy: one of ``STRATEGIES``.
        devices: the devices to use (``jax.devices()``).
        model_bytes: bytes of all the model's weights, frozen and trainable.
        mesh: an explicit ``{batch: B, model: M}`` shape, or None.

    Raises:
        DistributionError: an unknown strategy, or a mesh these devices cannot form.
    """
    devices = list(devices)
    if strategy not in STRATEGIES:
        raise DistributionError(f"distribution.strategy: {strategy!r} is not one of "
                                f"{', '.join(STRATEGIES)}")
    if strategy == "auto":
        strategy = _choose(devices, model_bytes, mesh)
    if strategy == "single":
        _mesh_sizes("single", 1, mesh)  # a mesh with single is a mistake: say so
        return MeshPlan("single", {"batch": 1, "model": 1}, devices[:1])
    sizes = _mesh_sizes(strategy, len(devices), mesh)
    return MeshPlan(strategy, sizes, devices)


def _choose(devices, model_bytes: int, mesh) -> str:
    """``auto``: split the model where the mesh says so, else by whether the model fits."""
    problem = mesh_problem("fsdp", mesh)  # the mesh's shape alone
    if problem:
        raise DistributionError(problem)
    if mesh and mesh.get("model", 1) > 1:
        return "model_parallel"
    if len(devices) == 1:
        return "single"
    return "data_parallel" if fits_one_device(model_bytes, device_memory(devices[0])) \
        else "fsdp"


def _mesh_sizes(strategy: str, count: int, mesh: dict | None) -> dict[str, int]:
    problem = mesh_problem(strategy, mesh)
    if problem:
        raise DistributionError(problem)
    if not mesh:
        return {"batch": 1, "model": count} if strategy == "model_parallel" \
            else {"batch": count, "model": 1}
    sizes = {a: mesh.get(a, 1) for a in AXES}
    if math.prod(sizes.values()) != count:
        raise DistributionError(
            f"distribution.mesh: batch {sizes['batch']} x model {sizes['model']} = "
            f"{math.prod(sizes.values())} devices, but {count} are here; choose sizes "
            f"whose product is {count}, or leave the mesh empty")
    return sizes
