"""Token examples to fixed-shape training batches: packed, shifted, masked, deterministic.

Every batch has the same shape (batch, sequence_length), so the train step compiles once.
With packing, short examples share a sequence; ``segment_ids`` (1, 2, ... per example, 0 for
padding) let the attention mask keep them apart. Inputs are the tokens, targets the next
tokens, and ``loss_mask`` marks targets that carry loss (the response and its end-of-turn
token for chat data; every token for plain text).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemma_panel.data.tokenized import tokens_per_sequence


@dataclass
class Sequences:
    """Arrays of shape (n_sequences, sequence_length)."""

    inputs: np.ndarray
    targets: np.ndarray
    loss_mask: np.ndarray
    segment_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, index) -> Sequences:
        return Sequences(self.inputs[index], self.targets[index], self.loss_mask[index],
                         self.segment_ids[index])

    @property
    def real_tokens(self) -> int:
        return int((self.segment_ids > 0).sum())

    def grouped(self, accumulation: int, batch_size: int) -> Sequences:
        """These rows as (accumulation, batch_size, length) micro-batches."""
        shape = (accumulation, batch_size, self.inputs.shape[-1])
        return Sequences(*(a.reshape(shape) for a in self.arrays()))

    def arrays(self) -> tuple:
        """What the train and eval steps take: (inputs, targets, loss mask, segment ids)."""
        return self.inputs, self.targets, self.loss_mask, self.segment_ids


def build_sequences(examples, sequence_length: int, pack: bool = True,
                    seed: int = 0) -> Sequences:
    """Lay examples (objects with ``input_ids`` and ``loss_mask``) into fixed-length rows.

    Each example of n tokens gives n - 1 (input, target) pairs. Packing is first-fit in a
    seeded shuffled order, so the result depends only on the data and the seed. Examples
    with fewer than two tokens or no trained token are skipped.
    """
    rows: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    room: list[int] = []
    order = np.random.default_rng(seed).permutation(len(examples))
    held = tokens_per_sequence(sequence_length)
    for i in order:
        ids = np.asarray(examples[i].input_ids[:held], dtype=np.int32)
        mask = np.asarray(examples[i].loss_mask[:held], dtype=np.int32)
        if len(ids) < 2 or not mask[1:].any():
            continue
        piece = (ids[:-1], ids[1:], mask[1:])
        n = len(piece[0])
        slot = next((r for r, free in enumerate(room) if free >= n), None) if pack else None
        if slot is None:
            rows.append([piece])
            room.append(sequence_length - n)
        else:
            rows[slot].append(piece)
            room[slot] -= n
    shape = (len(rows), sequence_length)
    out = Sequences(np.zeros(shape, np.int32), np.zeros(shape, np.int32),
                    np.zeros(shape, np.int32), np.zeros(shape, np.int32))
    for r, pieces in enumerate(rows):
        at = 0
        for segment, (inp, tgt, msk) in enumerate(pieces, 1):
            n = len(inp)
            out.inputs[r, at:at + n] = inp
            out.targets[r, at:at + n] = tgt
            out.loss_mask[r, at:at + n] = msk
            out.segment_ids[r, at:at + n] = segment
            at += n
    return out


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of sequences in an epoch: a function of (seed, epoch) only, for resume."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_at(sequences: Sequences, step: int, batch_size: int, accumulation: int,
             seed: int) -> Sequences:
    """The micro-batches of optimizer step ``step`` (0-based), shape (acc, batch, length).

    Any rows with ``take`` and ``grouped`` will do (image rows: training/vision.py).

    Steps walk through epochs in ``epoch_order``; a batch that crosses an epoch boundary
    takes the rest from the next epoch's order. Pure in its arguments, so a resumed run
    sees exactly the batches the uninterrupted run would have.
    """
    n = len(sequences)
    per_step = batch_size * accumulation
    start = step * per_step
    index = np.empty(per_step, dtype=np.int64)
    for k in range(per_step):
        epoch, position = divmod(start + k, n)
        index[k] = epoch_order(n, seed, epoch)[position]
    return sequences.take(index).grouped(accumulation, batch_size)


def max_loss_tokens(sequences: Sequences, batch_size: int, multiple: int = 16) -> int:
    """An upper bound on loss positions in any micro-batch, rounded up to ``multiple``.

    The LM head is computed only at loss positions; a fixed count keeps shapes static.
    The bound is the sum of the batch_size largest per-row counts. Every position of the
    bound costs a row of logits (262,144 wide on Gemma 3), used or not: rounding to 16
    rather than 128 took the quickstart's evaluation head from 256 positions to 192.
    """
    per_row = np.sort(sequences.loss_mask.sum(axis=1))[::-1]
    worst = int(per_row[:batch_size].sum())
    return max(multiple, -(-worst // multiple) * multiple)
