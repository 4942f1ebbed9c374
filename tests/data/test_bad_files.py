"""The corpus of bad files from issue 5: each gives a report that names the problem and
where it is; nothing crashes; no source file is modified."""

import hashlib
import json

import pytest

from gemma_panel.data.check import check_dataset
from gemma_panel.data.prepare import prepare_dataset
from gemma_panel.data.report import DatasetError

GOOD = [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(5)]


def _jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def truncated_jsonl(_):
    data = _jsonl(GOOD)
    return "t.jsonl", data + b'{"prompt": "cut', ("broken_json", 6)


def mixed_encodings(_):
    data = ("prompt,response\ncafé,yes\n".encode() + "crème,no\n".encode("cp1252")
            + "zoë,maybe\n".encode())
    return "mixed.csv", data, ("encoding", 3)


def unbalanced_quotes(_):
    return ("q.csv", b'prompt,response\na,b\n"c,d\ne,f\ng,h\n', ("csv_unbalanced_quote", 3))


def wrong_field_count(_):
    return "fields.csv", b"prompt,response\na,b\nc,d,e\nf,g\n", ("csv_field_count", 3)


def binary_named_csv(_):
    return "image.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, ("binary_file", None)


def random_binary_named_csv(_):
    import random

    rng = random.Random(0)
    return "noise.csv", bytes(rng.randrange(256) for _ in range(4096)), ("binary_file", None)


def empty_file(_):
    return "empty.jsonl", b"", ("empty_file", None)


def header_only(_):
    return "header.csv", b"prompt,response\n", ("no_examples", None)


def ten_mb_single_line(_):
    return "long.jsonl", _jsonl([{"text": "word " * 2_000_000}]), ("overlong", 1)


def ten_mb_single_line_text(_):
    return "long.txt", b"x" * 10_000_000, ("overlong", 1)


def nul_bytes(_):
    return "nul.jsonl", _jsonl(GOOD[:2]) + b'{"prompt": "a\x00b", "response": "c"}\n', \
        ("nul_byte", 3)


def wrong_column_names(_):
    return "cols.jsonl", _jsonl([{"question_txt": "a", "reply_txt": "b"}]), \
        ("unknown_columns", 1)


def millions_of_empty_lines(_):
    return "blank.jsonl", b"\n" * 2_000_000, ("blank_lines", 1)


def blank_lines_then_data(_):
    return "gap.jsonl", b"\n" * 1_000_000 + _jsonl(GOOD[:1]) + b"{oops}\n", \
        ("broken_json", 1_000_002)


_DEEP = "[" * 50_000 + "]" * 50_000  # past Python's recursion limit (RecursionError)


def deep_jsonl(_):
    return "deep.jsonl", _jsonl(GOOD[:2]) + ('{"prompt": ' + _DEEP + "}\n").encode(), \
        ("broken_json", 3)


def deep_json_array(_):
    return "deep.json", ('[{"prompt": "a", "response": "b"},\n{"prompt": ' + _DEEP
                         + "}]").encode(), ("broken_json", 2)


def deep_json_object(_):
    return "deep_object.json", ('{"prompt": ' + _DEEP + "}").encode(), ("broken_json", 1)


CORPUS = [truncated_jsonl, mixed_encodings, unbalanced_quotes, wrong_field_count,
          binary_named_csv,
          random_binary_named_csv, empty_file, header_only, ten_mb_single_line,
          ten_mb_single_line_text, nul_bytes, wrong_column_names, millions_of_empty_lines,
          blank_lines_then_data, deep_jsonl, deep_json_array, deep_json_object]


@pytest.mark.parametrize("make", CORPUS, ids=lambda f: f.__name__)
def test_bad_file_gives_a_report_naming_problem_and_place(tmp_path, make):
    name, data, (code, line) = make(tmp_path)
    path = tmp_path / name
    path.write_bytes(data)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns

    report = check_dataset(path)

    assert report.has(code), report.to_text()
    problem = report.examples[code][0]
    assert problem.file == str(path)
    assert problem.line == line
    text = report.to_text()
    assert str(path) in text and (line is None or f"line {line}" in text)
    # prepare refuses files with errors, in words; warnings alone let it through.
    if not report.ok:
        with pytest.raises(DatasetError) as exc:
            prepare_dataset(path)
        assert exc.value.report is not None
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written beside it


@pytest.mark.parametrize("make", CORPUS, ids=lambda f: f.__name__)
def test_cli_check_names_the_problem_and_exits_by_severity(tmp_path, make, capsys):
    """``gemma-panel data check`` on each bad file: the report, no traceback, exit 1 on
    errors and 0 when there are only warnings; ``--json`` gives the same report."""
    from gemma_panel.cli import main

    name, data, (code, line) = make(tmp_path)
    path = tmp_path / name
    path.write_bytes(data)
    status = main(["data", "check", str(path)])
    out, err = capsys.readouterr()
    report = check_dataset(path)
    assert status == (0 if report.ok else 1)
    assert "Traceback" not in out + err
    assert out.strip() == report.to_text()
    assert main(["data", "check", "--json", str(path)]) == status
    as_json = json.loads(capsys.readouterr().out)
    kind = next(k for k in as_json["kinds"] if k["code"] == code)
    assert kind["examples"][0]["file"] == str(path) and kind["examples"][0]["line"] == line
    if not report.ok:
        assert main(["data", "prepare", str(path), "--out", str(tmp_path / "out")]) == 1
        assert str(path) in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
