"""Packing, shifting and the deterministic batch order that exact resume depends on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemma_panel.training.batches import batch_at, build_sequences, max_loss_tokens


@dataclass
class Ex:
    input_ids: list[int]
    loss_mask: list[int]


def examples(n=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(4, 14))
        prompt = int(rng.integers(1, length - 1))
        ids = [2] + [int(x) for x in rng.integers(10, 99, length - 1)]
        out.append(Ex(ids, [0] * prompt + [1] * (length - prompt)))
    return out


def test_packing_keeps_each_example_whole_shifted_and_masked():
    data = examples()
    seq = build_sequences(data, 32, pack=True, seed=1)
    assert len(seq) < len(data)  # several examples share a row
    found = []
    for r in range(len(seq)):
        for s in range(1, seq.segment_ids[r].max() + 1):
            where = np.flatnonzero(seq.segment_ids[r] == s)
            assert np.all(np.diff(where) == 1)  # contiguous
            inputs, targets = seq.inputs[r, where], seq.targets[r, where]
            assert np.array_equal(inputs[1:], targets[:-1])  # targets are the next tokens
            found.append((tuple(inputs) + (targets[-1],), tuple(seq.loss_mask[r, where])))
    expected = {(tuple(e.input_ids), tuple(e.loss_mask[1:])) for e in data}
    assert set(found) == expected
    assert seq.real_tokens == sum(len(e.input_ids) - 1 for e in data)


def test_unpacked_rows_hold_one_example_each():
    seq = build_sequences(examples(), 32, pack=False)
    assert len(seq) == 12 and seq.segment_ids.max() == 1


def test_batches_are_a_pure_function_of_the_step():
    seq = build_sequences(examples(40), 32, seed=3)
    a = batch_at(seq, 5, batch_size=2, accumulation=2, seed=7)
    b = batch_at(seq, 5, batch_size=2, accumulation=2, seed=7)
    assert a.inputs.shape == (2, 2, 32)
    assert np.array_equal(a.inputs, b.inputs)
    # Every row appears once per epoch, in a new order each epoch.
    n = len(seq)
    epoch0 = np.concatenate([batch_at(seq, s, 1, 1, 7).inputs[0] for s in range(n)])
    epoch1 = np.concatenate([batch_at(seq, s, 1, 1, 7).inputs[0] for s in range(n, 2 * n)])
    assert sorted(map(tuple, epoch0)) == sorted(map(tuple, seq.inputs))
    assert not np.array_equal(epoch0, epoch1)


def test_loss_token_bound_covers_every_batch():
    seq = build_sequences(examples(40), 32, seed=3)
    bound = max_loss_tokens(seq, 3, multiple=8)
    for step in range(len(seq)):
        assert batch_at(seq, step, 3, 1, 0).loss_mask.sum() <= bound
    # by default a multiple of 16: every position of the bound costs a row of logits
    most = int(seq.loss_mask.sum(axis=1).max())
    assert max_loss_tokens(seq, 1) == max(16, -(-most // 16) * 16)
