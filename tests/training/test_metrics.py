"""Task metrics against the reference implementations, on the same pairs.

The reference for exact match and token F1 is the SQuAD v1.1 evaluation script, written out
below as it is published; the reference for macro-F1 is scikit-learn.
"""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest
from sklearn.metrics import accuracy_score, f1_score

from gemma_panel.evaluation import accuracy, exact_match, macro_f1, normalize, token_f1


# -- the SQuAD v1.1 evaluation script (evaluate-v1.1.py), verbatim in logic ------------------
def squad_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1_score(prediction, ground_truth):
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_exact_match_score(prediction, ground_truth):
    return squad_normalize_answer(prediction) == squad_normalize_answer(ground_truth)
# ---------------------------------------------------------------------------------------------


PAIRS = [
    ("The Eiffel Tower", "Eiffel Tower"),  # articles go
    ("don't", "dont"),  # punctuation is deleted, not made a space
    ("U.S.A.", "USA"),
    ("an apple a day", "Apple, day!"),
    ("Paris, France", "paris"),
    ("1,000 metres", "1000 metres"),
    ("theatre", "the atre"),  # "the" inside a word stays
    ("", ""),
    ("  ", "answer"),
    ("42", "forty-two"),
    ("The answer is 5.", "The answer is 5."),
    ("A cat sat on the mat", "the cat sat on a mat on the floor"),
    ("state-of-the-art", "state of the art"),
]


@pytest.mark.parametrize("prediction, reference", PAIRS)
def test_normalisation_exact_match_and_f1_are_squads(prediction, reference):
    assert normalize(prediction) == squad_normalize_answer(prediction)
    assert exact_match([prediction], [reference]) == float(
        squad_exact_match_score(prediction, reference))
    assert token_f1([prediction], [reference]) == pytest.approx(
        squad_f1_score(prediction, reference))


def test_corpus_scores_are_the_mean_of_squads_pair_scores():
    preds, refs = zip(*PAIRS)
    assert exact_match(preds, refs) == pytest.approx(
        sum(map(squad_exact_match_score, preds, refs)) / len(PAIRS))
    assert token_f1(preds, refs) == pytest.approx(
        sum(map(squad_f1_score, preds, refs)) / len(PAIRS))
    assert 0 < exact_match(preds, refs) < 1  # the pairs exercise both outcomes


LABELS = [
    # (predictions, references): generated labels against the true ones
    (["sport", "sport", "science", "music"], ["sport", "science", "science", "music"]),
    (["Sport.", "banana", "science", "sport"], ["sport", "sport", "science", "music"]),
    (["x", "y", "z"], ["a", "b", "c"]),
    (["sport"] * 5, ["sport", "sport", "music", "music", "science"]),
    (["The Science", "science", "I think music", "music"], ["science"] * 2 + ["music"] * 2),
]


@pytest.mark.parametrize("predictions, references", LABELS)
def test_macro_f1_is_scikit_learns_and_accuracy_its_accuracy(predictions, references):
    y_true = [squad_normalize_answer(r) for r in references]
    y_pred = [squad_normalize_answer(p) for p in predictions]
    assert macro_f1(predictions, references) == pytest.approx(
        f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert accuracy(predictions, references) == pytest.approx(
        accuracy_score(y_true, y_pred))


def test_a_label_that_is_no_class_lowers_macro_f1():
    refs = ["sport", "sport", "music", "music"]
    right = macro_f1(["sport", "sport", "music", "music"], refs)
    invented = macro_f1(["sport", "sport", "music", "jazz"], refs)
    # sport 1.0, music 2/3, jazz 0: averaged over three labels, not two
    assert right == 1.0 and invented == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_samples_and_task_rows_are_generated_once_per_distinct_prompt():
    from gemma_panel.training.samples import answers_both

    class Recording:  # records what it is asked; answers with the prompt reversed
        def __init__(self):
            self.calls = []

        def generate_many(self, prompts, options):
            self.calls.append(list(prompts))
            return [p[::-1] for p in prompts]

    gen = Recording()
    rows = [{"prompt": p, "reference": ""} for p in ("ab", "cd", "ef", "gh")]
    samples, task = answers_both(gen, rows[:2], rows, 8)
    assert gen.calls == [["ab", "cd", "ef", "gh"]]  # one batch, no prompt twice
    assert samples == ["ba", "dc"] and task == ["ba", "dc", "fe", "hg"]
