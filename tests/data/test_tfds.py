"""``tfds:NAME[:SPLIT]`` sources, read from datasets that real TFDS builders prepared here.

The builders below are ordinary ``tfds.core.GeneratorBasedBuilder``s; their
``download_and_prepare()`` writes TFRecord shards and ``dataset_info.json`` into a
temporary data dir, and the reader opens those files as it would any prepared dataset.
"""

from __future__ import annotations

import pytest

from gemma_panel.data import ReadOptions, check_dataset, open_records, prepare_dataset
from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.tfds_reader import (
    ENV_DATA_DIR,
    TfdsSource,
    parse_tfds_source,
    prepared_datasets,
    tfds_data_dir,
)

QA = [  # (question, context, answers, label)
    ("What is the capital of France?", "France is a country.", ["Paris"], "geo"),
    ("How many legs has a spider?", "Spiders are arachnids.", ["Eight"], "bio"),
    ("Who wrote Hamlet?", "A play from about 1600.", ["Shakespeare"], "lit"),
    ("What is water made of?", "A molecule.", ["Hydrogen and oxygen"], "bio"),
    ("Which planet is red?", "Seen from Earth.", [""], "geo"),  # an empty answer
    ("Who wrote Hamlet?", "A play from about 1600.", ["Shakespeare"], "lit"),  # duplicate
]
TEST = [("Who painted the Mona Lisa?", "A portrait.", ["Leonardo"], "art"),
        ("What is ice?", "Cold.", ["Frozen water", "Solid water"], "bio")]


# tfds 4.9 looks up a builder's source through `importlib_resources` (not installed here)
# when the builder's module is inside a package; a top-level module name skips that.
_BUILDER_MODULE = "panel_tiny_builders"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A data dir holding two datasets prepared by real TFDS builders."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import numpy as np

    class PanelTinyQa(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """SQuAD-shaped: nested answers, a class label, and a non-text tensor."""

        __module__ = _BUILDER_MODULE

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "question": tfds.features.Text(),
                "context": tfds.features.Text(),
                "answers": {"text": tfds.features.Sequence(tfds.features.Text())},
                "topic": tfds.features.ClassLabel(names=["geo", "bio", "lit", "art"]),
                "embedding": tfds.features.Tensor(shape=(3,), dtype=np.float32),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(QA), "test": self._generate_examples(TEST)}

        def _generate_examples(self, rows):
            for i, (q, c, a, t) in enumerate(rows):
                yield i, {"question": q, "context": c, "answers": {"text": a}, "topic": t,
                          "embedding": np.zeros(3, np.float32)}

    class PanelTinyChat(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Chat turns as a sequence of {role, content}."""

        __module__ = _BUILDER_MODULE

        VERSION = tfds.core.Version("2.0.0")

        def _info(self):
            turn = {"role": tfds.features.Text(), "content": tfds.features.Text()}
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "messages": tfds.features.Sequence(turn),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(4):
                yield i, {"messages": [{"role": "user", "content": f"Say {i}."},
                                       {"role": "assistant", "content": f"{i}."}]}

    root = tmp_path_factory.mktemp("tfds")
    PanelTinyQa(data_dir=str(root)).download_and_prepare()
    PanelTinyChat(data_dir=str(root)).download_and_prepare()
    return root


def _stored_rows(root, name, split):
    """The split's rows in stored order, read with TFDS directly (not through our reader)."""
    import tensorflow_datasets as tfds

    folder = next((root / name).glob("*.*.*"))
    builder = tfds.builder_from_directory(str(folder))
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_parse_tfds_source():
    assert parse_tfds_source("tfds:imdb_reviews") == TfdsSource("imdb_reviews")
    assert parse_tfds_source("tfds:glue/sst2:validation") == TfdsSource("glue/sst2", None,
                                                                         "validation")
    assert parse_tfds_source("tfds:mnist:3.0.1:train[:10%]") == TfdsSource("mnist", "3.0.1",
                                                                           "train[:10%]")
    assert parse_tfds_source("tfds:x:train[:100]+test").split == "train[:100]+test"
    with pytest.raises(DatasetError, match="name a dataset"):
        parse_tfds_source("tfds:")


def test_data_dir_option_env_and_default(tmp_path, monkeypatch, gemma_panel_home):
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert tfds_data_dir() == gemma_panel_home / "tfds"
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    assert tfds_data_dir() == tmp_path / "env"
    assert tfds_data_dir(tmp_path / "opt") == tmp_path / "opt"


def test_prepared_datasets_are_listed_from_their_info_files(tfds_dir):
    assert prepared_datasets(tfds_dir) == {
        "panel_tiny_chat:2.0.0": {"train": 4},
        "panel_tiny_qa:1.0.0": {"test": 2, "train": 6},
    }


def test_check_reads_rows_maps_features_and_reports_by_row(tfds_dir):
    source = "tfds:panel_tiny_qa:train"
    guess = check_dataset(source, read=ReadOptions(tfds_data_dir=str(tfds_dir)))
    assert guess.task == "classification" and guess.columns["label"] == "topic"
    # The guess is overridden like a file's: without the label it is instruction data.
    report = check_dataset(source, read=ReadOptions(tfds_data_dir=str(tfds_dir),
                                                    columns={"label": None}))
    assert report.format == "tfds" and report.rows_read == len(QA)
    assert report.task == "instruction"
    assert report.columns == {"prompt": "question", "input": "context",
                              "response": "answers/text"}
    # The float tensor is not text: skipped, and said so once.
    assert report.counts["non_text"] == 1 and "embedding (Tensor)" in str(
        report.examples["non_text"][0])
    # The empty answer is an error at its row and column; the repeat is a duplicate.
    (empty,) = report.examples["empty_string"]
    assert (empty.file, empty.column) == (source, "answers/text")
    stored = _stored_rows(tfds_dir, "panel_tiny_qa", "train")
    assert stored[empty.row - 1]["answers"]["text"].tolist() == [b""]
    (dup,) = report.examples["duplicate"]
    assert stored[dup.row - 1]["question"] == b"Who wrote Hamlet?"
    assert not report.ok and report.rows_usable == len(QA) - 1
    assert f"{source}, row {empty.row}, column 'answers/text'" in report.to_text()


def test_records_convert_labels_lists_and_nested_features(tfds_dir):
    report = ValidationReport(source="tfds:panel_tiny_qa:test")
    records = list(open_records("tfds:panel_tiny_qa:test", report, tfds_data_dir=tfds_dir))
    by_question = {r.values["question"]: r.values for r in records}
    assert [r.row for r in records] == [1, 2]
    mona = by_question["Who painted the Mona Lisa?"]
    assert mona == {"question": "Who painted the Mona Lisa?", "context": "A portrait.",
                    "answers/text": "Leonardo", "topic": "art"}  # label name, not 3
    assert by_question["What is ice?"]["answers/text"] == ["Frozen water", "Solid water"]


def test_slices_read_part_of_a_split(tfds_dir):
    report = check_dataset("tfds:panel_tiny_qa:train[:2]",
                           read=ReadOptions(tfds_data_dir=str(tfds_dir)))
    assert report.rows_read == 2


def test_missing_split_names_the_splits_that_exist(tfds_dir):
    report = check_dataset("tfds:panel_tiny_qa:validation",
                           read=ReadOptions(tfds_data_dir=str(tfds_dir)))
    assert not report.ok and report.rows_read == 0
    message = report.examples["unreadable"][0].message
    assert "no split 'validation'" in message
    assert "train (6 rows), test (2 rows)" in message


def test_missing_dataset_names_what_is_prepared(tfds_dir):
    report = check_dataset("tfds:panel_tiny_qaa", read=ReadOptions(tfds_data_dir=str(tfds_dir)))
    message = report.examples["unreadable"][0].message
    assert "no dataset 'panel_tiny_qaa'" in message and str(tfds_dir) in message
    assert "panel_tiny_qa:1.0.0 (train: 6, test: 2)" in message
    assert "panel_tiny_chat:2.0.0 (train: 4)" in message
    with pytest.raises(DatasetError, match="version 9.9.9 of panel_tiny_qa"):
        list(open_records("tfds:panel_tiny_qa:9.9.9:train", ValidationReport(),
                          tfds_data_dir=tfds_dir))


def test_catalog_dataset_not_prepared_says_how_to_prepare_it(tmp_path):
    report = check_dataset("tfds:imdb_reviews", read=ReadOptions(tfds_data_dir=str(tmp_path)))
    message = report.examples["unreadable"][0].message
    assert "TFDS knows 'imdb_reviews'" in message and "tfds build imdb_reviews" in message
    assert "Prepared there: none" in message


def test_prepare_accepts_tfds_like_a_file(tfds_dir, tmp_path):
    read = ReadOptions(tfds_data_dir=str(tfds_dir), columns={"label": None})
    with pytest.raises(DatasetError) as exc:  # a list of two answers is not one response
        prepare_dataset("tfds:panel_tiny_qa:train", read=read, missing="drop",
                        validation_path="tfds:panel_tiny_qa:test")
    assert "tfds:panel_tiny_qa:test, row" in str(exc.value) and "found a list" in str(exc.value)
    prepared = prepare_dataset("tfds:panel_tiny_qa:train", read=read, missing="drop",
                               validation_path="tfds:panel_tiny_qa:test", skip_bad_rows=True,
                               output_dir=tmp_path / "out")
    assert len(prepared.train) == len(QA) - 2  # the empty answer and the duplicate dropped
    assert [(e.prompt, e.input, e.response) for e in prepared.validation] == [
        ("Who painted the Mona Lisa?", "A portrait.", "Leonardo")]
    assert (tmp_path / "out" / "train.jsonl").read_text().count("\n") == len(QA) - 2


def test_chat_turns_become_messages(tfds_dir, monkeypatch):
    monkeypatch.setenv(ENV_DATA_DIR, str(tfds_dir))  # no option: the environment decides
    prepared = prepare_dataset("tfds:panel_tiny_chat", validation_fraction=0.25)
    assert prepared.mapping.task == "chat"
    example = (prepared.train + prepared.validation)[0]
    assert [t.role for t in example.messages] == ["user", "model"]
    assert example.messages[0].content.startswith("Say ")


def test_cli_checks_a_tfds_source(tfds_dir, monkeypatch, capsys):
    from gemma_panel.cli import main

    monkeypatch.setenv(ENV_DATA_DIR, str(tfds_dir))
    assert main(["data", "check", "tfds:panel_tiny_chat:train"]) == 0
    out = capsys.readouterr().out
    assert "tfds:panel_tiny_chat:train: 4 rows read (tfds)" in out and "OK" in out
    assert main(["data", "check", "tfds:panel_tiny_chat:dev"]) == 1
    assert "its splits are train (4 rows)" in capsys.readouterr().out


def test_damaged_shard_is_reported_not_raised(tfds_dir, tmp_path):
    import shutil

    copy = tmp_path / "tfds"
    shutil.copytree(tfds_dir / "panel_tiny_qa", copy / "panel_tiny_qa")
    (shard,) = (copy / "panel_tiny_qa" / "1.0.0").glob("*-train.tfrecord-*")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # cut in the middle of a record
    report = check_dataset("tfds:panel_tiny_qa:train", read=ReadOptions(tfds_data_dir=str(copy)))
    assert not report.ok and 0 < report.rows_read < len(QA)
    (problem,) = report.examples["unreadable"]
    assert f"reading stopped after row {report.rows_read}" in problem.message
    assert problem.file == "tfds:panel_tiny_qa:train"


def test_a_tfds_run_goes_through_submit_and_the_worker(tfds_dir, tmp_path, monkeypatch):
    """A ``tfds:`` source is a name, not a path: the run store keeps it as it is, and the
    worker (another process, in the run's folder) reads and prepares it."""
    from gemma_panel.config import load_recipe
    from gemma_panel.runs import RunStore, submit
    from tests.runs.conftest import REPO, fake_recipe, wait_finished

    monkeypatch.setenv(ENV_DATA_DIR, str(tfds_dir))
    monkeypatch.setenv("GEMMA_PANEL_HEARTBEAT_S", "0.25")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the worker imports the test trainer
    monkeypatch.chdir(tmp_path)
    store = RunStore(tmp_path / "home")
    recipe = fake_recipe("data.train_path=tfds:panel_tiny_chat:train",
                         "data.validation_fraction=0.25", "train.max_steps=2")
    run = submit(recipe, store, trainer="tests.runs.fake_trainer:prepare_then_train")
    stored = load_recipe(store.folder(run.id).recipe_path)
    assert stored.data.train_path == "tfds:panel_tiny_chat:train"
    done = wait_finished(store, run.id, timeout=240)
    assert done.status == "succeeded", f"{done.message}\n{done.log_tail}"
    logs = [e.message for e in store.events(run.id, kinds=["log"])]
    assert "prepared 3 train and 1 validation examples (chat)" in logs
    store.close()
