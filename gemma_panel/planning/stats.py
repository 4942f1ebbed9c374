"""What the planner knows about a dataset: the task and every example's token lengths.

``DatasetStats.of_prepared`` reads a `PreparedDataset` (its tokenized training examples);
``dataset_stats_for(recipe)`` prepares the recipe's data with the model's tokenizer, as the
run will. Lengths are kept per example so any sequence length's cut share is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gemma_panel.data.tokenized import tokens_per_sequence

PACK_SAMPLE = 2000  # examples packed exactly; more are estimated from a sample


@dataclass(frozen=True, eq=False)
class DatasetStats:
    """Training examples' token lengths (prompt: untrained, target: trained, stop included).

    Args:
        task: ``chat``, ``instruction``, ``classification`` or ``completion``.
        template: the template the recipe resolves to (``gemma``, ``gemma4``, ...).
        prompt, target: per-example token counts before truncation.
    """

    task: str | None
    prompt: np.ndarray
    target: np.ndarray
    template: str | None = None

    @classmethod
    def of_lengths(cls, prompt, target, task: str | None, template: str | None = None):
        return cls(task, np.asarray(prompt, dtype=np.int64), np.asarray(target, dtype=np.int64),
                   template)

    @classmethod
    def of_prepared(cls, prepared) -> DatasetStats:
        tokens = prepared.train_tokens
        return cls.of_lengths([t.prompt_tokens for t in tokens],
                              [t.target_tokens for t in tokens], prepared.mapping.task,
                              prepared.template.name)

    @property
    def examples(self) -> int:
        return len(self.prompt)

    @property
    def total(self) -> np.ndarray:
        return self.prompt + self.target

    def percentile(self, q: float) -> int:
        return math.ceil(np.percentile(self.total, q)) if self.examples else 0

    def cut_share(self, sequence_length: int) -> float:
        """Share of examples longer than a sequence (``tokens_per_sequence`` of it): their
        answers lose their ends, the stop token first."""
        return float(np.mean(self.total > tokens_per_sequence(sequence_length))) if self.examples else 0.0

    def untrained_share(self, sequence_length: int) -> float:
        """Share of examples whose prompt alone fills the sequence: nothing is learned."""
        return float(np.mean(self.prompt >= tokens_per_sequence(sequence_length))) if self.examples else 0.0

    def kept_tokens(self, sequence_length: int) -> int:
        return int(np.minimum(self.total, tokens_per_sequence(sequence_length)).sum())

    def trained_tokens(self, sequence_length: int) -> int:
        """Trained (answer) tokens per epoch at this sequence length."""
        room = np.clip(tokens_per_sequence(sequence_length) - self.prompt, 0, None)
        return int(np.minimum(room, self.target).sum())

    def sequences(self, sequence_length: int, pack: bool, seed: int = 0) -> int:
        """Training sequences per epoch: examples, or packed rows as batches.py packs them
        (first fit in a shuffled order; above ``PACK_SAMPLE`` examples, on a sample)."""
        room = np.clip(tokens_per_sequence(sequence_length) - self.prompt, 0, None)
        trains = np.minimum(room, self.target) > 0
        if not pack:
            return int(trains.sum())
        order = np.random.default_rng(seed).permutation(self.examples)  # batches.py's
        pieces = (np.minimum(self.total, tokens_per_sequence(sequence_length)) - 1)[order][trains[order]]
        if len(pieces) <= PACK_SAMPLE:
            return _first_fit(pieces, sequence_length)
        return math.ceil(_first_fit(pieces[:PACK_SAMPLE], sequence_length) * len(pieces)
                         / PACK_SAMPLE)

    def answer_share(self, sequence_length: int, pack: bool) -> float:
        """Share of a sequence's positions that carry loss (the LM head runs there)."""
        if not self.examples:
            return 0.5
        if pack:
            return self.trained_tokens(sequence_length) / max(1, self.kept_tokens(
                sequence_length))
        longest = np.minimum(self.target, sequence_length).max()
        return float(longest) / sequence_length


def _first_fit(pieces, length: int) -> int:
    """Rows first-fit packing needs for pieces of these lengths (batches.py's rule)."""
    free: list[int] = []
    for n in pieces:
        slot = next((r for r, f in enumerate(free) if f >= n), None)
        if slot is None:
            free.append(length - int(n))
        else:
            free[slot] -= int(n)
    return len(free)


def dataset_stats_for(recipe, tokenizer=None) -> DatasetStats:
    """Prepare the recipe's data as its run will and keep the token lengths.

    Without a tokenizer, the model's SentencePiece file is read (no weights are loaded).

    Raises:
        DatasetError: the data would stop the run (its report says why).
    """
    from gemma_panel.data.preflight import prepare_recipe_data

    if tokenizer is None:
        from gemma_panel.data.tokenizer import SentencePieceTokenizer
        from gemma_panel.models.loader import tokenizer_file

        tokenizer = SentencePieceTokenizer(tokenizer_file(recipe.model.source, progress=False))
    return DatasetStats.of_prepared(prepare_recipe_data(recipe, tokenizer))
