"""A run's place on the devices: which mesh the recipe's ``distribution`` resolves to here,
and the shardings its train step's arrays are placed with.

The trainer calls `shard_for_run` once, after compiling its steps; on one device it returns
None and nothing is placed (the arrays stay where JAX puts them). Otherwise the state is
placed with ``StepShardings.place`` and every batch with ``place_batch``; the jitted step
then runs as XLA's SPMD program over the mesh (computation follows the data's layout).
"""

from __future__ import annotations

from collections.abc import Callable

from gemma_panel.distribution.devices import describe_devices
from gemma_panel.distribution.layouts import StepShardings, step_shardings
from gemma_panel.distribution.strategy import resolve


def shard_for_run(recipe, lm, compiled, log: Callable[[str], None]) -> StepShardings | None:
    """Resolve the recipe's strategy on this machine's devices and log both lines.

    Args:
        recipe: the run's recipe (``distribution`` and ``train.batch_size`` are read).
        lm: the loaded model (its weights' bytes choose ``auto``).
        compiled: the run's ``TrainFunctions`` (variables and optimizer to lay out).
        log: where the two lines go (the run's log).

    Raises:
        DistributionError: a mesh these devices cannot form, or a batch that does not
            split over the mesh's ``batch`` axis (one sentence with what would).
    """
    import jax

    log(describe_devices().summary())
    model_bytes = sum(v.value.nbytes for v in lm.backbone.weights)
    d = recipe.distribution
    plan = resolve(d.strategy, jax.devices(), model_bytes, d.mesh)
    log(plan.summary())
    if len(plan.devices) == 1:
        return None
    plan.check_batch_size(recipe.train.batch_size)
    return step_shardings(plan, compiled.trainable_vars, compiled.frozen_vars,
                          compiled.optimizer)
