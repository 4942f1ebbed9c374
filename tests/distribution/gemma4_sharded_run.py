"""Train tiny random Gemma 4s with LoRA for 5 steps on one device and under fsdp (dense and
mixture of experts), and lay the mixture of experts out under model_parallel (batch 4 x
model 2: two experts per model shard; placed, not trained, to keep the run short); print what
tests/distribution/test_gemma4_sharded.py checks.

Run in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``:
``python -m tests.distribution.gemma4_sharded_run``. The last stdout line is JSON: per
variant and strategy the losses, what LoRA learned, every state array's sharding next to the
layout map's (as placed and as trained), and each weight's rank. Leaner than
``sharded_run.run`` (no memory analysis, no eval step): one compile per run.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import numpy as np

from tests.distribution.sharded_run import BATCH, LENGTH, STEPS, batches, spec_text, state_specs
from tests.distribution.tiny_gemma4 import tiny_gemma4_lm

RUNS = {"dense": {"single": None, "fsdp": None},
        "moe": {"single": None, "fsdp": None, "model_parallel": {"batch": 4, "model": 2}}}
PLACED_ONLY = {("moe", "model_parallel")}


def run(strategy: str, lm, recipe, mesh=None, steps_to_run: int = STEPS) -> dict:
    """``steps_to_run`` steps of the project's jitted step on arrays placed by
    ``step_shardings`` (0: the placed state's layout only)."""
    from gemma_panel.distribution.layouts import gemma_layout_map, step_shardings
    from gemma_panel.distribution.strategy import resolve
    from gemma_panel.training.step import TrainFunctions

    steps = TrainFunctions(lm, recipe, STEPS, BATCH * LENGTH, BATCH * LENGTH)
    plan = resolve(strategy, jax.devices(), 0, mesh)
    shardings = step_shardings(plan, steps.trainable_vars, steps.frozen_vars, steps.optimizer)
    trainable, opt_state, frozen = shardings.place(*steps.initial_state())
    initial = [np.asarray(t) for t in trainable]
    placed = state_specs(steps, trainable, opt_state, frozen)
    key, losses = jax.random.PRNGKey(0), []
    for step, batch in enumerate(batches()[:steps_to_run]):
        trainable, opt_state, out = steps.train_step(
            trainable, opt_state, frozen, shardings.place_batch(batch),
            jax.random.fold_in(key, step))
        losses.append(float(out["loss"]))
    trained = state_specs(steps, trainable, opt_state, frozen)
    layout_map = gemma_layout_map(plan, lm.backbone.weights)
    specs = {name: {"layout": spec_text(layout_map[name.split(":", 1)[1]].axes),
                    "placed": placed[name], "trained": trained[name]} for name in placed}
    return {"plan": plan.strategy, "losses": losses, "specs": specs,
            "learned": float(sum(np.abs(np.asarray(t) - i).sum()
                                 for t, i in zip(trainable, initial)))}


def main() -> None:
    from gemma_panel.config import load_recipe

    assert jax.device_count() == 8, "run with --xla_force_host_platform_device_count=8"
    recipe = load_recipe(None, ["train.learning_rate=0.003", "train.warmup_steps=1",
                                "train.max_steps=5"])
    results = {}
    for variant, strategies in RUNS.items():
        lm = tiny_gemma4_lm(variant)
        results[variant] = {s: run(s, lm, recipe, mesh, 0 if (variant, s) in PLACED_ONLY
                                   else STEPS) for s, mesh in strategies.items()}
        results[variant]["ndim"] = {v.path: len(v.shape) for v in lm.backbone.weights}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
