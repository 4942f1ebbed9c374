"""Task metrics over (prediction, reference) pairs of generated text.

Answers are compared after light normalisation (case, surrounding whitespace and
punctuation, repeated spaces), as SQuAD's evaluation does for exact match and token F1.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after normalisation."""
    if not references:
        return 0.0
    return sum(normalize(p) == normalize(r) for p, r in zip(predictions, references)) / len(
        references
    )


def token_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean F1 of the word overlap between each prediction and its reference."""
    scores = []
    for p, r in zip(predictions, references):
        pt, rt = normalize(p).split(), normalize(r).split()
        common = sum((Counter(pt) & Counter(rt)).values())
        if not pt or not rt:
            scores.append(float(pt == rt))
        elif common == 0:
            scores.append(0.0)
        else:
            precision, recall = common / len(pt), common / len(rt)
            scores.append(2 * precision * recall / (precision + recall))
    return sum(scores) / len(scores) if scores else 0.0


def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Classification accuracy: the normalised predicted label equals the reference."""
    return exact_match(predictions, references)


def macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """F1 per reference class, averaged with equal weight (rare classes count fully)."""
    preds = [normalize(p) for p in predictions]
    refs = [normalize(r) for r in references]
    classes = sorted(set(refs))
    scores = []
    for c in classes:
        tp = sum(p == c and r == c for p, r in zip(preds, refs))
        fp = sum(p == c and r != c for p, r in zip(preds, refs))
        fn = sum(p != c and r == c for p, r in zip(preds, refs))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return sum(scores) / len(scores) if scores else 0.0
