"""Task metrics over (prediction, reference) pairs of generated text.

Exact match and token F1 are the SQuAD v1.1 evaluation script's: lower-case, drop
punctuation (deleted, not turned into spaces), drop the articles a/an/the, collapse
whitespace; token F1 is 0 when no token is shared (also when both answers are empty).
``macro_f1`` is scikit-learn's ``f1_score(average="macro")`` on the normalised labels: the
classes are every label seen in the references or the predictions, so a generated label
that is no class counts against the score (its F1 is 0).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """SQuAD's normalize_answer: lower-case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after normalisation."""
    return _mean([float(normalize(p) == normalize(r)) for p, r in zip(predictions, references)])


def _pair_f1(prediction: str, reference: str) -> float:
    pt, rt = normalize(prediction).split(), normalize(reference).split()
    common = sum((Counter(pt) & Counter(rt)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pt), common / len(rt)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean F1 of the word overlap between each prediction and its reference."""
    return _mean([_pair_f1(p, r) for p, r in zip(predictions, references)])


def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Classification accuracy: the normalised predicted label equals the reference."""
    return exact_match(predictions, references)


def macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """F1 per label, averaged with equal weight, over reference and predicted labels alike."""
    pairs = [(normalize(p), normalize(r)) for p, r in zip(predictions, references)]
    scores = []
    for label in sorted({c for pair in pairs for c in pair}):
        tp = sum(p == label and r == label for p, r in pairs)
        wrong = sum((p == label) != (r == label) for p, r in pairs)  # false pos. + false neg.
        scores.append(2 * tp / (2 * tp + wrong))
    return _mean(scores)
