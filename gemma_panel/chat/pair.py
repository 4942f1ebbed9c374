"""The two models a chat talks to: a run's tuned model at one checkpoint, and its base.

The tuned model is rebuilt from the checkpoint as the exporters rebuild it
(``load_run_model``). For a LoRA run the base is the same model with every LoRA ``B`` at
zero (``lora_switched_off``), so one copy of the weights serves both sides: this is how the
trainer's base samples are made too (LoRA's ``B`` starts at zero). A full fine-tune has no
base inside it, so its base model is loaded beside it.

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


def checkpoint_choices(run_dir: str | Path) -> tuple[list[int], int | None]:
    """(the run's whole checkpoints' steps, oldest first; the best one's step if kept)."""
    import json

    from gemma_panel.training.checkpoint import checkpoint_step, list_checkpoints

    found = list_checkpoints(Path(run_dir))
    steps = [checkpoint_step(p) for p in found]
    if not found:
        return [], None
    best = json.loads((found[-1] / "meta.json").read_text()).get("best_step")
    return steps, best if best in steps else None


class ModelPair:
    """A run's tuned model at ``step`` (None: its latest checkpoint) and its base model.

    Args:
        run_dir: the run's folder (holds recipe.yaml and checkpoints/).
        step: the checkpoint's step.

    Example:
        >>> pair = ModelPair("runs/tiny-3f2a1b")
        >>> ids = pair.stream_ids("base", pair.format.prompt([("user", "Hi")]),
        ...                       SamplingOptions(max_new_tokens=8))
        >>> pair.generator("base").detokenize(list(ids))
    """

    def __init__(self, run_dir: str | Path, step: int | None = None):
        from gemma_panel.export.source import load_run_model

        source = load_run_model(run_dir, step, with_validation=False)
        self.run_dir, self.step = Path(source.run_dir), source.step
        self.format: ChatFormat = recipe_chat_format(source.recipe)
        self.lora = source.has_lora
        self._lm = source.lm
        self._tuned = StreamingGenerator(source.lm)
        self._base = self._tuned if self.lora else StreamingGenerator(_base_model(source.recipe))

    @property
    def key(self) -> tuple[str, int]:
        return str(self.run_dir.resolve()), int(self.step)

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


def _base_model(recipe):
    """The recipe's model as it was before training (for a full fine-tune's base side)."""
    from gemma_panel.models import load_model

    return load_model(recipe.model.source, dtype=recipe.model.dtype, progress=False)
