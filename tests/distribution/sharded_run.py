"""Train a tiny random Gemma 3 for 5 steps under each strategy; print what the tests check.

Run in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (JAX
reads the flag once, at start-up): ``python -m tests.distribution.sharded_run``.
The last stdout line is JSON: per strategy the 5 losses, per-device memory from XLA's
compiled memory analysis, and every state array's sharding spec next to the one the layout
says (``gemma_layout_map``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import numpy as np

STEPS, BATCH, LENGTH, VOCAB = 5, 8, 32, 512
TARGETS = ["query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2",
           "ffw_linear"]


def tiny_gemma3():
    """Gemma 3 270M's shape in miniature: 4 query heads, one key/value head, q/k norms."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCAB, image_size=16, num_layers=2, num_query_heads=4,
        num_key_value_heads=1, hidden_dim=64, intermediate_dim=128, head_dim=32,
        vision_encoder=None)
    backbone.enable_lora(4, target_layer_names=TARGETS)
    return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)


def batches():
    rng = np.random.default_rng(0)
    out = []
    for _ in range(STEPS):
        tokens = rng.integers(4, VOCAB, (1, BATCH, LENGTH + 1)).astype("int32")
        mask = (rng.random((1, BATCH, LENGTH)) < 0.5).astype("int32")
        segments = np.ones((1, BATCH, LENGTH), "int32")
        segments[:, :, LENGTH // 2:] = 2  # two packed examples per row
        out.append((tokens[..., :-1], tokens[..., 1:], mask, segments))
    return out


def spec_text(axes) -> str:
    """A spec as text without trailing Nones: JAX prints (None, None) and () alike."""
    axes = list(axes)
    while axes and axes[-1] is None:
        axes.pop()
    return str(tuple(axes))


def state_specs(steps, trainable, opt_state, frozen) -> dict[str, str]:
    """Every state array's sharding spec, keyed ``kind:path``."""
    adam = opt_state[-1][0]  # chain(clip, adamw) -> adamw's (ScaleByAdamState, ...)
    arrays = [("trainable", steps.trainable_vars, trainable),
              ("frozen", steps.frozen_vars, frozen),
              ("adam_mu", steps.trainable_vars, list(adam.mu)),
              ("adam_nu", steps.trainable_vars, list(adam.nu))]
    return {f"{kind}:{v.path}": spec_text(a.sharding.spec)
            for kind, variables, values in arrays for v, a in zip(variables, values)}


def run(strategy: str, lm, recipe, mesh=None, pinned=False) -> tuple[dict, tuple]:
    """5 steps under a strategy: through ``steps.train_step`` on placed arrays, or (pinned)
    through the same step function jitted with ``train_jit_kwargs``.

    Returns (the report, the trained (trainable, opt_state, frozen) and the shardings).
    """
    from gemma_panel.distribution.layouts import gemma_layout_map, step_shardings
    from gemma_panel.distribution.strategy import resolve
    from gemma_panel.training.step import TrainFunctions

    steps = TrainFunctions(lm, recipe, STEPS, BATCH * LENGTH, BATCH * LENGTH)
    model_bytes = sum(v.value.nbytes for v in lm.backbone.weights)
    plan = resolve(strategy, jax.devices(), model_bytes, mesh)
    shardings = step_shardings(plan, steps.trainable_vars, steps.frozen_vars, steps.optimizer)
    train_step, eval_step = steps.train_step, steps.eval_step
    if pinned:
        train_step = jax.jit(steps._train_step, donate_argnums=(0, 1),
                             **shardings.train_jit_kwargs())
        eval_step = jax.jit(steps._eval_step, **shardings.eval_jit_kwargs())
    trainable, opt_state, frozen = shardings.place(*steps.initial_state())
    initial = [np.asarray(t) for t in trainable]
    placed = state_specs(steps, trainable, opt_state, frozen)
    key = jax.random.PRNGKey(0)
    data = [shardings.place_batch(b) for b in batches()]
    memory = train_step.lower(trainable, opt_state, frozen, data[0], key).compile() \
        .memory_analysis()
    losses = []
    for step, batch in enumerate(data):
        trainable, opt_state, out = train_step(
            trainable, opt_state, frozen, batch, jax.random.fold_in(key, step))
        losses.append(float(out["loss"]))
    trained = state_specs(steps, trainable, opt_state, frozen)
    # the eval step takes host arrays, (batch, length), as evaluate() passes them
    loss_sum, count, hits = eval_step(trainable, frozen, tuple(a[0] for a in batches()[0]))
    layout_map = gemma_layout_map(plan, lm.backbone.weights)
    specs = {name: {"layout": spec_text(layout_map[name.split(":", 1)[1]].axes),
                    "placed": placed[name], "trained": trained[name]} for name in placed}
    report = {"plan": plan.strategy, "axis_sizes": plan.axis_sizes, "losses": losses,
              "eval": [float(loss_sum), float(count), float(hits)],
              "argument_bytes": memory.argument_size_in_bytes,
              "output_bytes": memory.output_size_in_bytes,
              "temp_bytes": memory.temp_size_in_bytes, "specs": specs,
              "learned": float(sum(np.abs(np.asarray(t) - i).sum()
                                   for t, i in zip(trainable, initial)))}
    return report, ((trainable, opt_state, frozen), shardings)


def resume_across_meshes(trained: dict, directory: Path) -> dict:
    """Save each run's checkpoint with the project's checkpoint code, load it for the other
    mesh (fsdp on 8 devices -> 1 device, and back), place it there; compare the values."""
    from gemma_panel.training.checkpoint import load_checkpoint, save_checkpoint

    out = {}
    for source, target in (("fsdp", "single"), ("single", "fsdp")):
        (trainable, opt_state, _), _ = trained[source]
        path = save_checkpoint(directory / source, STEPS, trainable, opt_state, {})
        (like_trainable, like_opt, frozen), shardings = trained[target]
        loaded_trainable, loaded_opt, _ = load_checkpoint(path, like_trainable, like_opt)
        placed = shardings.place(loaded_trainable, loaded_opt, frozen)
        pairs = zip(jax.tree.leaves(placed[:2]), jax.tree.leaves((trainable, opt_state)))
        out[f"{source}->{target}"] = {
            "max_difference": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                  for a, b in pairs),
            "laid_out_for_target": all(
                a.sharding == b for a, b in zip(jax.tree.leaves(placed[:2]), jax.tree.leaves(
                    (shardings.trainable, shardings.opt_state)))),
        }
    return out


def main() -> None:
    from gemma_panel.config import load_recipe
    from gemma_panel.distribution.devices import describe_devices

    assert jax.device_count() == 8, "run with --xla_force_host_platform_device_count=8"
    recipe = load_recipe(None, ["train.learning_rate=0.003", "train.warmup_steps=1",
                                "train.max_steps=5"])
    lm = tiny_gemma3()
    runs = {s: run(s, lm, recipe) for s in ("single", "data_parallel", "fsdp")}
    runs["model_parallel"] = run("model_parallel", lm, recipe, mesh={"batch": 2, "model": 4})
    runs["fsdp_pinned"] = run("fsdp", lm, recipe, pinned=True)
    results = {name: report for name, (report, _) in runs.items()}
    results["devices"] = describe_devices().to_dict()
    with tempfile.TemporaryDirectory() as directory:
        results["resume"] = resume_across_meshes(
            {name: trained for name, (_, trained) in runs.items()}, Path(directory))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
