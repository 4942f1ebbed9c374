"""A tiny LoRA run folder whose tuned model differs from its base, made in about a second.

The recipe is the tiny random Gemma 3's; the checkpoint holds the LoRA factors with every
``B`` drawn at random (training starts them at zero, and a few steps on a random model
barely move its answers), written by the trainer's own ``save_checkpoint``, so the chat
loads it as it loads any run's checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "instruction" / "unit_conversions.jsonl"
STEP = 3


def tiny_recipe(gguf: Path, name: str = "tiny-chat", *overrides: str):
    from gemma_panel.config import load_recipe

    return load_recipe(None, [f"name={name}", f"model.source={gguf}",
                              f"data.train_path={DATA}", "data.sequence_length=64",
                              "train.max_steps=3", "train.warmup_steps=1", "eval.num_samples=0",
                              "lora.target_layers=[query,value,ffw_linear]", *overrides])


def write_tuned_checkpoint(recipe, run_dir: Path, scale: float = 0.5, seed: int = 0) -> Path:
    """recipe.yaml and a checkpoint at ``STEP`` whose LoRA ``B`` factors are random (without
    LoRA: every weight moved by noise of ``scale`` times its own spread)."""
    import jax

    from gemma_panel.config import recipe_to_yaml
    from gemma_panel.models.lora import lora_layers
    from gemma_panel.training import load_tuned_model
    from gemma_panel.training.checkpoint import save_checkpoint
    from gemma_panel.training.step import make_optimizer

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe))
    lm = load_tuned_model(recipe)
    rng = np.random.default_rng(seed)
    for layer in lora_layers(lm):
        b = layer.lora_kernel_b
        b.assign(rng.normal(0.0, scale, tuple(b.shape)).astype(b.dtype))
    if not recipe.lora.enabled:
        for v in lm.backbone.trainable_variables:
            value = np.asarray(v.value)
            noise = rng.normal(0.0, scale * (value.std() or 1.0), value.shape)
            v.assign((value + noise).astype(value.dtype))
    trainable = [np.asarray(v.value) for v in lm.backbone.trainable_variables]
    optimizer, _ = make_optimizer(recipe, total_steps=1)
    opt_state = optimizer.init([jax.numpy.asarray(t) for t in trainable])
    meta = {"tokens_seen": 0, "best_val_loss": None, "best_step": None, "bad_evals": 0,
            "data_position": 0, "rng": {"train_seed": 0, "data_seed": 0}}
    return save_checkpoint(run_dir, STEP, trainable, opt_state, meta)
