"""The shipped example datasets are clean, and match what their generator writes."""

import json
from pathlib import Path

import pytest

from gemma_panel.data.check import ReadOptions, check_dataset

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("path, read, task, rows", [
    ("instruction/unit_conversions.jsonl", ReadOptions(), "instruction", 314),
    ("classification/topics.csv", ReadOptions(), "classification", 160),
    ("text/kitchen_garden.txt", ReadOptions(text_mode="paragraph"), "completion", 13),
])
def test_example_dataset_is_clean(path, read, task, rows, tokenizer):
    report = check_dataset(EXAMPLES / path, read=read, tokenizer=tokenizer,
                           sequence_length=512)
    assert report.task == task and report.rows_usable == rows
    assert report.ok and report.n_warnings == 0, report.to_text()
    assert report.token_stats["truncated_share"] == 0


def test_instruction_answers_share_one_style():
    rows = [json.loads(line) for line in
            (EXAMPLES / "instruction/unit_conversions.jsonl").read_text().splitlines()]
    for row in rows:
        first, second = row["response"].split("\n")
        assert " = " in first and second.startswith("(") and second.endswith(")")


def test_generator_reproduces_the_committed_files(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_examples",
                                                  EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "instruction").mkdir()
    (tmp_path / "classification").mkdir()
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.main()
    for name in ("instruction/unit_conversions.jsonl", "classification/topics.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes()


def test_cli_prepare_writes_the_processed_dataset(tmp_path, capsys):
    from gemma_panel.cli import main

    out = tmp_path / "prepared"
    src = EXAMPLES / "classification/topics.csv"
    before = src.read_bytes()
    assert main(["data", "prepare", str(src), "--out", str(out), "--seed", "1"]) == 0
    assert "written to" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "report.json",
                                                     "train.jsonl", "validation.jsonl"]
    meta = json.loads((out / "dataset.json").read_text())
    train = (out / "train.jsonl").read_text().splitlines()
    validation = (out / "validation.jsonl").read_text().splitlines()
    assert meta["task"] == "classification" and len(train) + len(validation) == 160
    assert (meta["train_examples"], meta["validation_examples"]) == (len(train), len(validation))
    assert all(json.loads(line)["label"] in meta["labels"] for line in validation)
    assert src.read_bytes() == before
