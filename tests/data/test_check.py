import json

import pytest

from gemma_panel.data.check import ReadOptions, check_dataset
from gemma_panel.data.templates import GemmaChatTemplate
from gemma_panel.data.text_checks import inspect_text, repair_mojibake


def jsonl(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_clean_file_is_ok_and_report_serialises(tmp_path):
    p = jsonl(tmp_path, [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(10)])
    report = check_dataset(p)
    assert report.ok and report.rows_usable == 10 and report.task == "instruction"
    data = report.to_dict()
    json.dumps(data)
    assert data["ok"] and data["columns"] == {"prompt": "prompt", "response": "response"}
    assert report.to_text().endswith("OK: 0 errors, 0 warnings, 10 usable rows")


def test_missing_and_empty_values_name_line_and_column(tmp_path):
    p = jsonl(tmp_path, [{"prompt": "a", "response": "b"}, {"prompt": "c"},
                         {"prompt": "  ", "response": "d"}])
    report = check_dataset(p)
    assert not report.ok
    missing, = report.examples["missing_value"]
    assert (missing.line, missing.column, missing.severity) == (2, "response", "error")
    empty, = report.examples["empty_string"]
    assert (empty.line, empty.column) == (3, "prompt")
    assert "missing-value policy" in missing.message


@pytest.mark.parametrize("policy, usable", [("drop", 1), ("fill:n/a", 3), ("keep", 3),
                                            ("column:alt", 2)])
def test_missing_value_policies_turn_errors_into_warnings(tmp_path, policy, usable):
    p = jsonl(tmp_path, [{"prompt": "a", "response": "b", "alt": "x"},
                         {"prompt": "c", "alt": "y"}, {"prompt": "", "response": "d"}])
    report = check_dataset(p, missing=policy)
    assert report.rows_usable == usable
    if policy == "column:alt":  # row 3 has no alt to fill its prompt from
        assert report.examples["empty_string"][0].severity == "error"
    else:
        assert report.ok and report.severities["missing_value"] == "warning"


def test_wrong_types(tmp_path):
    p = jsonl(tmp_path, [{"prompt": 42, "response": "b"}, {"prompt": "a", "response": [1]}])
    report = check_dataset(p)
    first, second = report.examples["wrong_type"]
    assert first.severity == "warning" and first.line == 1 and "converted" in first.message
    assert second.severity == "error" and second.column == "response"


def test_exact_and_near_duplicates(tmp_path):
    rows = [{"prompt": "What is 2+2?", "response": "4"}, {"prompt": "other", "response": "x"},
            {"prompt": "What is 2+2?", "response": "4"},
            {"prompt": "what is 2 + 2", "response": "4."}]
    report = check_dataset(jsonl(tmp_path, rows))
    dup, = report.examples["duplicate"]
    near, = report.examples["near_duplicate"]
    assert dup.line == 3 and dup.message.startswith("same as row 1")
    assert near.line == 4 and report.ok  # duplicates are warnings


def test_overlong_and_no_target_with_a_tokenizer(tmp_path, tokenizer):
    rows = [{"prompt": "short", "response": "ok"},
            {"prompt": "short", "response": "long answer " * 40},
            {"prompt": "long question " * 60, "response": "ok"}]
    report = check_dataset(jsonl(tmp_path, rows), tokenizer=tokenizer, sequence_length=64,
                           template=GemmaChatTemplate())
    assert report.examples["overlong"][0].line == 2
    assert report.examples["no_target"][0].line == 3 and not report.ok
    stats = report.token_stats
    assert stats["examples"] == 3 and stats["truncated_examples"] == 2
    assert stats["tokens_per_epoch"] <= 3 * 64


def test_max_chars_without_tokenizer(tmp_path):
    report = check_dataset(jsonl(tmp_path, [{"text": "x" * 500}, {"text": "y"}]), max_chars=100)
    assert report.examples["overlong"][0].row == 1


def test_labels_rare_and_single(tmp_path):
    rows = [{"text": f"t{i}", "label": "pos"} for i in range(10)] + [{"text": "u", "label": "neg"}]
    report = check_dataset(jsonl(tmp_path, rows))
    assert report.label_counts == {"pos": 10, "neg": 1}
    rare, = report.examples["rare_label"]
    assert "'neg'" in rare.message and rare.line == 11
    only = check_dataset(jsonl(tmp_path, rows[:10], "one.jsonl"))
    assert only.has("single_label") and not only.ok


def test_same_prompt_in_train_and_validation(tmp_path):
    train = jsonl(tmp_path, [{"prompt": "Hello there", "response": "a"},
                             {"prompt": "b", "response": "c"}], "train.jsonl")
    val = jsonl(tmp_path, [{"prompt": "new", "response": "a"},
                           {"prompt": "hello there!", "response": "z"}], "val.jsonl")
    report = check_dataset(train, validation_path=val)
    leak, = report.examples["split_leak"]
    assert leak.file == str(val) and leak.line == 2
    assert report.rows_read == 4


def test_column_override_through_read_options(tmp_path):
    p = jsonl(tmp_path, [{"q": "a", "a": "b"}])
    assert not check_dataset(p).ok
    report = check_dataset(p, read=ReadOptions(columns={"prompt": "q", "response": "a"}))
    assert report.ok and report.columns == {"prompt": "q", "response": "a"}


def test_chat_messages_in_a_csv_cell(tmp_path):
    cell = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    p = tmp_path / "chat.csv"
    p.write_text('messages\n"' + cell.replace('"', '""') + '"\n"[not json"\n')
    report = check_dataset(p)
    assert report.rows_usable == 1
    assert report.examples["bad_messages"][0].line == 3


@pytest.mark.parametrize("text, code", [
    ("fine text", None),
    ("caf\u00c3\u00a9 and it\u00e2\u20ac\u2122s", "mojibake"),
    ("bad \ufffd char", "replacement_char"),
    ("bell \x07 char", "non_text"),
    ("data:image/png;base64," + "A" * 300, "non_text"),
    ("say <end_of_turn> now", "control_token"),
    ("x" * 150 + "<pad>", "control_token"),
    ("A" * 250, "non_text"),  # a long base64-like run
    ("A" * 199, None),
    ("two\x01 controls\x02", "non_text"),
])
def test_text_checks(text, code):
    codes = [i.code for i in inspect_text(text)]
    assert codes == ([code] if code else [])


def test_mojibake_repair():
    assert repair_mojibake("caf\u00c3\u00a9 it\u00e2\u20ac\u2122s") == "café it\u2019s"
    assert repair_mojibake("café") is None


def test_near_key_ascii_fast_path_matches_the_unicode_rule():
    import random
    import re
    import unicodedata

    from gemma_panel.data.example import near_key

    def reference(text):
        return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()

    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)]
    samples = ["".join(rng.choices(alphabet, k=rng.randrange(30))) for _ in range(2000)]
    samples += ["Hello,  World!!", "a_b-c", "  --  ", "", "Ünïcode Straße", "ﬁne Ａ"]
    for text in samples:
        assert near_key(text) == reference(text), repr(text)
