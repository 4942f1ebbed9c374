"""The two models a chat talks to: a run's tuned model (at one checkpoint, or one of its
exports) and its base.

From a checkpoint, the tuned model is rebuilt as the exporters rebuild it
(``load_run_model``); from an export, it is the export's file or folder loaded as its
consumer loads it (``export.inventory.load_export``), so the chat shows what that export
answers. While the tuned model carries LoRA layers (a LoRA run's checkpoint, a ``lora``
export) the base is the same model with every LoRA ``B`` at zero (``lora_switched_off``),
so one copy of the weights serves both sides: this is how the trainer's base samples are
made too (LoRA's ``B`` starts at zero). A full fine-tune or a merged export has no base
inside it, so the run's base model is loaded beside it.

``StreamingGenerator.stream_ids`` reads the model's weights once, when its first token is
asked for, and keeps them for the whole answer; the base side takes its first token with
LoRA switched off, and then streams on from those weights while the tuned side streams from
the LoRA weights: both answers can be interleaved token by token.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from gemma_panel.chat.conversation import ChatFormat, recipe_chat_format
from gemma_panel.models.generation import SamplingOptions, StreamingGenerator

SIDES = ("base", "tuned")
# What a pair is loaded from: (resolved run folder, checkpoint step, export folder name);
# the step is None for an export, the export None for a checkpoint.
PairKey = tuple[str, int | None, str | None]


class ModelPair:
    """A run's tuned model at ``step`` (None: its latest checkpoint), or from its export
    ``export``, and its base model.

    Args:
        run_dir: the run's folder (holds recipe.yaml, checkpoints/ and exports/).
        step: the checkpoint's step.
        export: the name of an export folder in ``run_dir/exports`` (then ``step`` is
            not used: the export's own step is reported).

    Example:
        >>> pair = ModelPair("runs/tiny-3f2a1b")
        >>> ids = pair.stream_ids("base", pair.format.prompt([("user", "Hi")]),
        ...                       SamplingOptions(max_new_tokens=8))
        >>> pair.generator("base").detokenize(list(ids))
        >>> ModelPair("runs/tiny-3f2a1b", export="gguf-f16-step000004")
    """

    def __init__(self, run_dir: str | Path, step: int | None = None,
                 export: str | None = None):
        from gemma_panel.models.lora import lora_layers

        self.export = export
        if export is None:
            lm, recipe, self.run_dir, self.step = _from_checkpoint(run_dir, step)
        else:
            lm, recipe, self.run_dir, self.step = _from_export(Path(run_dir), export)
        self.format: ChatFormat = recipe_chat_format(recipe)
        self.lora = bool(lora_layers(lm))
        self._lm = lm
        self._tuned = StreamingGenerator(lm)
        self._base = self._tuned if self.lora else StreamingGenerator(_base_model(recipe))

    @property
    def key(self) -> PairKey:
        step = None if self.export is not None else int(self.step)
        return str(self.run_dir.resolve()), step, self.export

    def generator(self, side: str) -> StreamingGenerator:
        return self._tuned if side == "tuned" else self._base

    def stream_ids(self, side: str, prompt: str, options: SamplingOptions) -> Iterator[int]:
        """The answer's token ids from one side, lazily (the first is computed at once)."""
        ids = self.generator(side).stream_ids(prompt, options)
        if side == "base" and self.lora:
            from gemma_panel.models.lora import lora_switched_off

            return _started(ids, lora_switched_off(self._lm))
        return _started(ids)


def _started(ids: Iterator[int], context: AbstractContextManager | None = None
             ) -> Iterator[int]:
    """``ids`` with its first token already computed (inside ``context``, if any): the
    generator takes the model's weights then, and keeps them for the rest of the answer."""
    import contextlib

    with context or contextlib.nullcontext():
        first = next(ids, None)
    return iter(()) if first is None else itertools.chain([first], ids)


def _from_checkpoint(run_dir, step):
    """(tuned model, recipe, run folder, step) rebuilt from the run's checkpoint."""
    from gemma_panel.export.source import load_run_model

    source = load_run_model(run_dir, step, with_validation=False)
    return source.lm, source.recipe, Path(source.run_dir), source.step


def _from_export(run_dir: Path, export: str):
    """(tuned model, recipe, run folder, step) of the run's export folder ``export``."""
    from gemma_panel.config import load_recipe
    from gemma_panel.export.inventory import load_export, run_exports
    from gemma_panel.export.manifest import ExportError

    found = {e.name: e for e in run_exports(run_dir)}
    if export not in found:
        names = ", ".join(found) or "none"
        raise ExportError(f"The run in '{run_dir}' has no export '{export}' (its exports: "
                          f"{names}); pick another, or export it in the Export tab.")
    recipe = load_recipe(run_dir / "recipe.yaml")
    return load_export(found[export].path), recipe, run_dir, found[export].step


def _base_model(recipe):
    """The recipe's model as it was before training (for a full fine-tune's base side)."""
    from gemma_panel.models import load_model

    return load_model(recipe.model.source, dtype=recipe.model.dtype, progress=False)
