import json
from collections import Counter

import pytest

from gemma_panel.data.check import ReadOptions
from gemma_panel.data.example import Example
from gemma_panel.data.prepare import prepare_dataset
from gemma_panel.data.report import DatasetError
from gemma_panel.data.split import find_split_leaks, split_examples
from gemma_panel.data.stats import TokenStatistics
from gemma_panel.data.templates import ClassificationTemplate


def examples(n, **kw):
    return [Example(prompt=f"p{i}", response=f"r{i}", row=i + 1, **kw) for i in range(n)]


def test_random_split_is_seeded_and_disjoint():
    data = examples(100)
    train, val = split_examples(data, validation_fraction=0.2, seed=1)
    assert len(val) == 20 and len(train) == 80
    assert not {e.row for e in train} & {e.row for e in val}
    assert [e.row for e in split_examples(data, validation_fraction=0.2, seed=1)[1]] == \
        [e.row for e in val]
    assert [e.row for e in split_examples(data, validation_fraction=0.2, seed=2)[1]] != \
        [e.row for e in val]
    assert [e.row for e in train] == sorted(e.row for e in train)  # original order kept


def test_split_by_column_keeps_groups_together():
    data = [Example(text=f"t{i}", row=i + 1, fields={"doc": str(i // 5)}) for i in range(50)]
    train, val = split_examples(data, validation_fraction=0.2, by="doc")
    train_docs = {e.fields["doc"] for e in train}
    val_docs = {e.fields["doc"] for e in val}
    assert val_docs and not train_docs & val_docs
    assert len(val) == 10


def test_stratified_split_keeps_label_shares():
    data = [Example(text=f"t{i}", label="a" if i % 4 else "b", row=i + 1) for i in range(200)]
    train, val = split_examples(data, validation_fraction=0.25, stratify=True)
    assert Counter(e.label for e in val) == {"a": 38, "b": 12}
    assert Counter(e.label for e in train) == {"a": 112, "b": 38}


def test_augmented_rows_never_enter_validation():
    data = examples(20)
    augmented = [Example(prompt=f"p{i} aug", response=f"r{i}", row=100 + i, augmented=True,
                         origin=i + 1) for i in range(20)]
    train, val = split_examples(data + augmented, validation_fraction=0.3, seed=0)
    assert val and not any(e.augmented for e in val)
    val_rows = {e.row for e in val}
    # an augmented copy of a validation row would leak it into training: dropped
    assert not any(e.augmented and e.origin in val_rows for e in train)
    assert sum(e.augmented for e in train) == 20 - len(val)


def test_find_split_leaks():
    train = [Example(prompt="Hello, world", row=1)]
    val = [Example(prompt="hello world!", row=5), Example(prompt="other", row=6)]
    [(leak, row)] = find_split_leaks(train, val)
    assert leak.row == 5 and row == 1


def test_token_statistics():
    stats = TokenStatistics(sequence_length=9)  # 9 positions hold 10 tokens (+ the target)
    for prompt, target in [(4, 2), (6, 6), (3, 20)]:
        stats.add_lengths(prompt, target)
    s = stats.summary()
    assert s["examples"] == 3 and s["total"]["max"] == 23 and s["prompt"]["mean"] == pytest.approx(13 / 3)
    assert s["truncated_share"] == pytest.approx(2 / 3) and s["truncated_examples"] == 2
    assert s["tokens_per_epoch"] == 6 + 10 + 10
    assert s["trained_tokens_per_epoch"] == 2 + 4 + 7
    assert sum(s["total"]["histogram"]["counts"]) == 3


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prepare_dedupes_splits_tokenizes_and_saves(tmp_path, tokenizer):
    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"{2 * i}."} for i in range(40)]
    rows += [rows[0], rows[1], {"prompt": "x", "response": ""}]
    src = write_jsonl(tmp_path / "src.jsonl", rows)
    with pytest.raises(DatasetError, match="missing|error"):
        prepare_dataset(src)
    prepared = prepare_dataset(src, missing="drop", tokenizer=tokenizer, sequence_length=64,
                               validation_fraction=0.25, output_dir=tmp_path / "out")
    assert len(prepared.train) + len(prepared.validation) == 40  # 2 duplicates, 1 dropped
    assert len(prepared.validation) == 10
    assert len(prepared.train_tokens) == len(prepared.train)
    assert prepared.token_stats["examples"] == 30
    first = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])
    assert first["rendered"].endswith("<end_of_turn>")
    assert len(first["input_ids"]) == len(first["loss_mask"])
    assert first["input_ids"][-1] == tokenizer.end_of_turn_id and first["loss_mask"][-1] == 1
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["task"] == "instruction" and meta["validation_examples"] == 10
    assert json.loads((tmp_path / "out" / "report.json").read_text())["ok"]


def test_prepare_duplicate_policies(tmp_path):
    rows = [{"text": "a"}, {"text": "b"}, {"text": "a"}, {"text": "A!"}, {"text": "c"}]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    texts = lambda p: sorted(e.text for e in p.train + p.validation)
    assert texts(prepare_dataset(src, duplicates="keep_all")) == ["A!", "a", "a", "b", "c"]
    assert texts(prepare_dataset(src, duplicates="keep_first")) == ["A!", "a", "b", "c"]
    assert texts(prepare_dataset(src, duplicates="drop_all")) == ["A!", "b", "c"]
    assert texts(prepare_dataset(src, duplicates="drop_all", near_duplicates=True)) == ["b", "c"]
    with pytest.raises(DatasetError, match="duplicate policy"):
        prepare_dataset(src, duplicates="newest")


def test_prepare_classification_template_lists_all_labels_and_stratifies(tmp_path):
    rows = [{"text": f"t{i}", "label": ["pos", "neg", "neutral"][i % 3]} for i in range(60)]
    prepared = prepare_dataset(write_jsonl(tmp_path / "c.jsonl", rows), validation_fraction=0.2)
    assert isinstance(prepared.template, ClassificationTemplate)
    assert prepared.template.labels == ("neg", "neutral", "pos")
    assert Counter(e.label for e in prepared.validation) == {"pos": 4, "neg": 4, "neutral": 4}


def test_prepare_skip_bad_rows(tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text('{"text": "a"}\n{"text": \n{"text": "b"}\n')
    with pytest.raises(DatasetError) as exc:
        prepare_dataset(src)
    assert "skip_bad_rows" in str(exc.value) and exc.value.report.has("broken_json")
    prepared = prepare_dataset(src, skip_bad_rows=True, validation_fraction=0)
    assert [e.text for e in prepared.train] == ["a", "b"]


def test_prepare_with_separate_validation_file(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"q": f"q{i}", "a": "x"} for i in range(5)])
    val = write_jsonl(tmp_path / "v.jsonl", [{"q": "q1", "a": "y"}, {"q": "new", "a": "z"}])
    prepared = prepare_dataset(train, validation_path=val,
                               read=ReadOptions(columns={"prompt": "q", "response": "a"}))
    assert len(prepared.train) == 5 and len(prepared.validation) == 2
    leak, = prepared.report.examples["split_leak"]
    assert leak.file == str(val) and leak.line == 1


def test_prepare_never_writes_over_its_input(tmp_path, capsys):
    from gemma_panel.cli import main

    data = tmp_path / "data"
    data.mkdir()
    train = data / "train.jsonl"
    train.write_text('{"text": "a"}\n{"text": \n{"text": "b"}\n{"text": "c"}\n')
    before = train.read_bytes()
    code = main(["data", "prepare", str(train), "--out", str(data), "--skip-bad-rows"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"would replace the input file '{train}'" in err and "--out" in err
    assert "Traceback" not in err
    assert train.read_bytes() == before
    assert sorted(p.name for p in data.iterdir()) == ["train.jsonl"]

    other = tmp_path / "raw.jsonl"
    other.write_text("".join(f'{{"text": "t{i}"}}\n' for i in range(10)))
    validation = data / "validation.jsonl"
    validation.write_text('{"text": "v"}\n')
    code = main(["data", "prepare", str(other), "--validation", str(validation),
                 "--out", str(data)])
    assert code == 2 and "validation.jsonl" in capsys.readouterr().err
    assert validation.read_text() == '{"text": "v"}\n'

    link = tmp_path / "link.jsonl"  # the same file under another name is still an input
    link.symlink_to(train)
    with pytest.raises(DatasetError, match="would replace the input file"):
        prepare_dataset(link, skip_bad_rows=True, output_dir=data)
    prepared = prepare_dataset(link, skip_bad_rows=True, validation_fraction=0)
    with pytest.raises(DatasetError, match="would replace the input file"):
        prepared.save(data)
    assert train.read_bytes() == before
    assert main(["data", "prepare", str(train), "--out", str(data / "prepared"),
                 "--skip-bad-rows", "--validation-fraction", "0"]) == 0
    assert len((data / "prepared" / "train.jsonl").read_text().splitlines()) == 3
    assert train.read_bytes() == before
