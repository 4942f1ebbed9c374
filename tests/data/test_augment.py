import json
import random
from pathlib import Path

import pytest

from gemma_panel.data.augment import Augmenter, apply_op, wordnet_synonyms
from gemma_panel.data.example import Example
from gemma_panel.data.prepare import prepare_dataset
from gemma_panel.data.report import DatasetError

SENTENCE = "the quick brown fox jumps over the lazy dog near the river bank"


def test_swap_and_delete_keep_or_drop_words():
    rng = random.Random(0)
    swapped = apply_op(SENTENCE, "swap", 0.2, rng)
    assert swapped != SENTENCE and sorted(swapped.split()) == sorted(SENTENCE.split())
    deleted = apply_op(SENTENCE, "delete", 0.2, rng).split()
    assert len(deleted) == len(SENTENCE.split()) - 3
    assert all(w in SENTENCE.split() for w in deleted)


def test_synonym_and_insert_use_the_source():
    table = {"quick": ["fast"], "lazy": ["idle"], "river": ["stream"]}
    synonyms = lambda w: table.get(w.lower(), [])
    rng = random.Random(1)
    replaced = apply_op(SENTENCE, "synonym", 0.2, rng, synonyms)
    assert "fast" in replaced and "idle" in replaced and "stream" in replaced
    inserted = apply_op(SENTENCE, "insert", 0.1, rng, synonyms).split()
    assert len(inserted) == len(SENTENCE.split()) + 1


def test_augmenter_marks_rows_and_leaves_responses_alone():
    examples = [Example(prompt=SENTENCE, response="an answer", row=i + 1) for i in range(3)]
    out = Augmenter(ops=("swap",), copies=2, seed=3)(examples)
    assert len(out) == 6
    assert all(e.augmented and e.response == "an answer" and e.line is None for e in out)
    assert [e.origin for e in out] == [1, 1, 2, 2, 3, 3]
    assert len({e.row for e in out} | {1, 2, 3}) == 9  # new row numbers
    assert Augmenter(ops=("swap",), copies=2, seed=3).preview(examples) == out


def test_augmenter_refuses_bad_settings():
    with pytest.raises(DatasetError, match="synonym source"):
        Augmenter(ops=("synonym",))
    with pytest.raises(DatasetError, match="ops"):
        Augmenter(ops=("shout",))


def test_prepare_augments_training_only_and_never_touches_the_source(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"{SENTENCE} {i}", "response": str(i)}) + "\n"
                           for i in range(20)))
    before = src.read_bytes()
    prepared = prepare_dataset(src, augment=Augmenter(ops=("swap", "delete")),
                               validation_fraction=0.25)
    assert src.read_bytes() == before
    assert not any(e.augmented for e in prepared.validation)
    augmented = [e for e in prepared.train if e.augmented]
    val_rows = {e.row for e in prepared.validation}
    assert len(augmented) == 15 and not any(e.origin in val_rows for e in augmented)


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").exists(),
                    reason="Debian's wordnet-base is not installed")
def test_wordnet_synonyms():
    pytest.importorskip("nltk")
    synonyms = wordnet_synonyms()
    assert "automobile" in synonyms("car")
    assert "fast" in synonyms("quick")
    assert synonyms("qwxzv") == []


def test_wordnet_missing_database_is_explained(tmp_path):
    pytest.importorskip("nltk")
    with pytest.raises(DatasetError, match="wordnet-base"):
        wordnet_synonyms(tmp_path)
