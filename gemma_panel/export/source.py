"""What an export starts from: a run's tuned model at a checkpoint, merged or not.

``load_run_model`` rebuilds the run's model as training left it: the recipe's model with LoRA
enabled (``load_tuned_model``), then the checkpoint's trainable arrays assigned to
``backbone.trainable_variables`` in order. ``merged_copy`` folds LoRA into the kernels with
Keras's own merge (``EinsumDense.save_own_variables`` writes ``W + (alpha/r) A B``) into a
fresh backbone without LoRA: KerasHub's Hugging Face exporter reads the base kernels only and
would silently drop an unmerged LoRA (DESIGN.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemma_panel.export.manifest import ExportError
from gemma_panel.models.lora import lora_layers, lora_settings, sublayers


@dataclass
class ExportSource:
    """The model an export is made from, and where it came from.

    Args:
        lm: the tuned KerasHub causal LM (LoRA enabled if the run used LoRA).
        run_id: the run's id (or folder name), when it came from a run.
        run_dir: the run's folder.
        step: the checkpoint's optimizer step.
        checkpoint: the checkpoint folder.
        recipe: the run's recipe (its model source, LoRA settings, data).
        validation: validation ``Sequences`` (unpacked) for perplexity, or None.
    """

    lm: Any
    run_id: str | None = None
    run_dir: Path | None = None
    step: int | None = None
    checkpoint: Path | None = None
    recipe: Any = None
    validation: Any = None
    _merged: Any = field(default=None, repr=False)

    @property
    def has_lora(self) -> bool:
        return bool(lora_layers(self.lm))

    def merged(self):
        """The model with LoRA folded in (built once; the model itself if it has no LoRA)."""
        if self._merged is None:
            self._merged = merged_copy(self.lm)
        return self._merged

    def describe(self) -> dict:
        recipe = self.recipe
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "step": self.step,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "model_source": recipe.model.source if recipe is not None else None,
            "model_class": type(self.lm).__name__,
            "lora": lora_settings(self.lm),
        }


def backbone_family(lm) -> str | None:
    """The Gemma family of a KerasHub causal LM by its backbone: ``gemma4``, ``gemma3``, ..."""
    name = type(lm.backbone).__name__.lower()
    return name.removesuffix("backbone") if name.startswith("gemma") else None


def merged_copy(lm):
    """A new causal LM, same preprocessor, whose backbone has the LoRA folded into its kernels.

    Each layer's variables go through Keras's ``save_own_variables`` (which merges LoRA) and
    ``load_own_variables`` of the same layer in a backbone built from the same config.
    """
    if not lora_layers(lm):
        return lm
    backbone = lm.backbone
    fresh = type(backbone).from_config(backbone.get_config())
    source_layers = sublayers(backbone, include_self=True)
    target_layers = sublayers(fresh, include_self=True)
    if [type(a) for a in source_layers] != [type(b) for b in target_layers]:
        raise ExportError("the model's layers do not match a fresh copy of its backbone; "
                          "cannot merge LoRA (is the backbone a custom subclass?)")
    for source, target in zip(source_layers, target_layers):
        store: dict = {}
        source.save_own_variables(store)
        if store:
            target.load_own_variables(store)
    return type(lm)(backbone=fresh, preprocessor=lm.preprocessor)


def resolve_run_dir(run: str | os.PathLike, store=None) -> tuple[str, Path]:
    """(run id, folder) for a run id, a unique id prefix, or a run folder path."""
    path = Path(run)
    if path.is_dir() and (path / "recipe.yaml").is_file():
        return path.name, path
    from gemma_panel.runs import RunNotFound, RunStore

    store = store or RunStore()
    try:
        found = store.get(str(run))
    except RunNotFound as exc:
        raise ExportError(f"{exc}; or give the path of a run folder (it holds recipe.yaml).") \
            from exc
    return found.id, Path(found.run_dir)


def pick_checkpoint(run_dir: Path, step: int | None) -> Path:
    from gemma_panel.training.checkpoint import checkpoint_step, list_checkpoints

    found = list_checkpoints(run_dir)
    if not found:
        raise ExportError(
            f"The run in '{run_dir}' has no checkpoint yet, so there is nothing to export. "
            "Wait for its first checkpoint (train.checkpoint_every), or resume it.")
    if step is None:
        return found[-1]
    for path in found:
        if checkpoint_step(path) == step:
            return path
    steps = ", ".join(str(checkpoint_step(p)) for p in found)
    raise ExportError(f"The run has no checkpoint at step {step}; it has steps {steps} "
                      "(the latest two and the best are kept).")


def load_run_model(run: str | os.PathLike, step: int | None = None, store=None,
                   with_validation: bool = True) -> ExportSource:
    """The run's tuned model at ``step`` (default: its latest checkpoint)."""
    import jax

    from gemma_panel.config import load_recipe
    from gemma_panel.training import load_tuned_model
    from gemma_panel.training.checkpoint import load_checkpoint
    from gemma_panel.training.step import make_optimizer

    run_id, run_dir = resolve_run_dir(run, store)
    checkpoint = pick_checkpoint(run_dir, step)
    recipe = load_recipe(run_dir / "recipe.yaml")
    lm = load_tuned_model(recipe)
    variables = lm.backbone.trainable_variables
    trainable_like = [jax.ShapeDtypeStruct(tuple(v.shape), v.dtype) for v in variables]
    optimizer, _ = make_optimizer(recipe, total_steps=1)
    opt_like = jax.eval_shape(optimizer.init, trainable_like)
    try:
        trainable, _, meta = load_checkpoint(checkpoint, trainable_like, opt_like)
    except ValueError as exc:
        raise ExportError(f"{exc}: the recipe.yaml in the run folder no longer describes "
                          "the model this checkpoint was trained with.") from exc
    for variable, value in zip(variables, trainable):
        variable.assign(value)
    validation = validation_sequences(recipe, lm) if with_validation else None
    return ExportSource(lm=lm, run_id=run_id, run_dir=run_dir, step=int(meta["step"]),
                        checkpoint=checkpoint, recipe=recipe, validation=validation)


def validation_sequences(recipe, lm, max_sequences: int = 16):
    """The run's validation examples as unpacked sequences, for perplexity (None if none)."""
    from gemma_panel.training import TrainingError, prepare_data
    from gemma_panel.training.batches import build_sequences

    try:
        prepared = prepare_data(recipe, lm)
    except (TrainingError, OSError):
        return None  # the data moved since training: perplexity is then not reported
    sequences = build_sequences(prepared.validation_tokens, recipe.data.sequence_length,
                                pack=False, seed=recipe.data.seed)
    if len(sequences) > max_sequences:
        sequences = sequences.take(np.arange(max_sequences))
    return sequences if len(sequences) else None
