"""Train/validation split: random with a seed, by a column, or stratified by label.

Augmented rows always go to training, and an augmented copy of a validation row is
dropped: otherwise validation would measure memorisation of rows seen in training.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from gemma_panel.data.example import Example, near_key
from gemma_panel.data.report import DatasetError


def split_examples(
    examples: Sequence[Example],
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
    by: str | None = None,
    stratify: bool = False,
) -> tuple[list[Example], list[Example]]:
    """Split into (train, validation), each in the original order.

    Args:
        validation_fraction: the share of original (not augmented) rows for validation.
        seed: the same seed gives the same split.
        by: a column; rows with the same value in it stay together (e.g. one document's
            paragraphs, one user's messages), so validation sees unseen groups.
        stratify: keep each label's share the same in both splits.
    """
    if not 0 <= validation_fraction < 1:
        raise DatasetError(f"validation fraction must be in [0, 1), not {validation_fraction}.")
    if by and stratify:
        raise DatasetError("split either by a column or stratified by label, not both.")
    originals = [e for e in examples if not e.augmented]
    rng = random.Random(seed)
    if validation_fraction == 0 or len(originals) < 2:
        val_rows: set[int] = set()
    elif by:
        val_rows = _split_groups(originals, by, validation_fraction, rng)
    elif stratify:
        val_rows = _split_stratified(originals, validation_fraction, rng)
    else:
        rows = [e.row for e in originals]
        rng.shuffle(rows)
        val_rows = set(rows[: _count(len(rows), validation_fraction)])
    train = [e for e in examples if e.row not in val_rows and not (
        e.augmented and e.origin in val_rows)]
    validation = [e for e in originals if e.row in val_rows]
    return train, validation


def find_split_leaks(train: Sequence[Example], validation: Sequence[Example]
                     ) -> list[tuple[Example, int]]:
    """(validation example, training row) for prompts that appear in both splits."""
    seen: dict[str, int] = {}
    for e in train:
        seen.setdefault(near_key(e.user_text), e.row)
    return [(e, seen[k]) for e in validation if (k := near_key(e.user_text)) in seen]


def _count(n: int, fraction: float) -> int:
    return min(n - 1, max(1, round(n * fraction)))


def _split_groups(examples, by, fraction, rng) -> set[int]:
    groups: dict[str, list[int]] = defaultdict(list)
    for e in examples:
        if by not in e.fields:
            raise DatasetError(f"cannot split by {by!r}: row {e.row} has no such column.")
        groups[e.fields[by]].append(e.row)
    if len(groups) < 2:
        raise DatasetError(f"cannot split by {by!r}: every row has the same value.")
    keys = sorted(groups)
    rng.shuffle(keys)
    target, val = _count(len(examples), fraction), set()
    for key in keys[:-1]:  # at least one group stays for training
        if len(val) >= target:
            break
        val.update(groups[key])
    return val


def _split_stratified(examples, fraction, rng) -> set[int]:
    by_label: dict[str, list[int]] = defaultdict(list)
    for e in examples:
        if e.label is None:
            raise DatasetError(f"cannot stratify: row {e.row} has no label.")
        by_label[e.label].append(e.row)
    val = set()
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        # A class with one example stays in training: it cannot be in both.
        k = round(len(rows) * fraction) if len(rows) > 1 else 0
        val.update(rows[: min(k, len(rows) - 1)] if len(rows) > 1 else [])
    return val
