import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gemma_panel.data.readers import detect_format, open_records
from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.sources import register_remote_opener, resolve_path


def read(path, **kw):
    report = ValidationReport(source=str(path))
    records = list(open_records(path, report, **kw))
    return records, report


def write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_csv_semicolon_bom_and_quoted_multiline(tmp_path):
    p = write(tmp_path, "a.csv", b'\xef\xbb\xbfprompt;response\n"two\nlines";"say ""hi"""\nx;y\n')
    records, report = read(p)
    assert report.encoding == "utf-8-sig"
    assert [r.values for r in records] == [
        {"prompt": "two\nlines", "response": 'say "hi"'}, {"prompt": "x", "response": "y"}]
    assert [r.line for r in records] == [2, 4]  # the first record spans lines 2-3
    assert list(records[0].values) == ["prompt", "response"]  # no BOM in the name


@pytest.mark.parametrize("delimiter", [",", "\t", "|", ";"])
def test_csv_delimiter_is_sniffed(tmp_path, delimiter):
    rows = [["text", "label"], ["good, fine film", "pos"], ["bad; awful", "neg"]]
    body = "\n".join(delimiter.join(f'"{c}"' if delimiter in c or "," in c or ";" in c else c
                                    for c in row) for row in rows) + "\n"
    records, _ = read(write(tmp_path, "d.csv", body.encode()))
    assert records[0].values == {"text": "good, fine film", "label": "pos"}



def test_csv_blank_lines_are_skipped_and_counted_once_at_the_end(tmp_path):
    records, report = read(write(tmp_path, "b.csv", b"prompt,response\n\na,b\n\n\nc,d\n"))
    assert [r.line for r in records] == [3, 6]
    [blank] = report.examples["blank_lines"]
    assert blank.line == 2 and "3 blank line(s)" in blank.message


def test_csv_of_blank_lines_only_has_no_header_and_says_so(tmp_path):
    _, report = read(write(tmp_path, "c.csv", b"\n\n  \n"))
    assert "only blank lines" in report.examples["no_examples"][0].message

def test_cp1252_file_is_detected_and_reported(tmp_path):
    p = write(tmp_path, "w.csv", "text,label\ncafé crème,ok\n".encode("cp1252"))
    records, report = read(p)
    assert records[0].values["text"] == "café crème"
    assert report.encoding == "cp1252" and report.has("encoding")


def test_mixed_encodings_keep_utf8_and_report_the_odd_line(tmp_path):
    data = "text,label\ncafé,a\n".encode() + "naïve,b\n".encode("cp1252") + "zoë,c\n".encode()
    records, report = read(write(tmp_path, "m.csv", data))
    assert [r.values["text"] for r in records] == ["café", "naïve", "zoë"]
    assert report.encoding == "utf-8"
    [problem] = report.examples["encoding"]
    assert problem.line == 3 and "cp1252" in problem.message


def test_utf16_with_and_without_bom(tmp_path):
    text = "prompt,response\nhi,hello\n"
    for name, data in (("bom.csv", text.encode("utf-16")), ("le.csv", text.encode("utf-16-le"))):
        records, _ = read(write(tmp_path, name, data))
        assert records[0].values == {"prompt": "hi", "response": "hello"}


def test_explicit_encoding_wins(tmp_path):
    p = write(tmp_path, "k.txt", "Привет мир\n".encode("koi8-r"))
    records, _ = read(p, encoding="koi8-r")
    assert records[0].values["text"] == "Привет мир"


def test_jsonl_broken_line_is_reported_and_reading_goes_on(tmp_path):
    p = write(tmp_path, "a.jsonl", b'{"text": "a"}\n{"text": "b",\n{"text": "c"}\n"just a string"\n')
    records, report = read(p)
    assert [r.values for r in records if not r.broken] == [{"text": "a"}, {"text": "c"}]
    assert report.examples["broken_json"][0].line == 2
    assert report.examples["not_an_object"][0].line == 4


def test_json_array_is_streamed_with_line_numbers(tmp_path):
    items = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(5000)]
    p = tmp_path / "a.json"
    p.write_text("[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n")
    records, report = read(p)
    assert [r.values for r in records] == items
    assert records[0].line == 2 and records[-1].line == 5001
    assert report.ok


def test_json_array_cut_off_is_reported(tmp_path):
    p = write(tmp_path, "cut.json", b'[{"a": 1},\n{"a": 2},\n{"a": ')
    records, report = read(p)
    assert len(records) == 2
    assert report.examples["broken_json"][0].line == 3


def test_json_object_with_one_list_and_jsonl_named_json(tmp_path):
    records, _ = read(write(tmp_path, "o.json", b'{"version": 1, "data": [{"a": 1}, {"a": 2}]}'))
    assert [r.values for r in records] == [{"a": 1}, {"a": 2}]
    records, _ = read(write(tmp_path, "l.json", b'{"a": 1}\n{"a": 2}\n'))
    assert [r.line for r in records] == [1, 2]


def test_text_modes(tmp_path):
    p = write(tmp_path, "t.txt", b"first line\nsecond\n\n\nthird para\n")
    lines, _ = read(p, text_mode="line")
    assert [r.values["text"] for r in lines] == ["first line", "second", "third para"]
    assert lines[2].line == 5
    paras, _ = read(p, text_mode="paragraph")
    assert [r.values["text"] for r in paras] == ["first line\nsecond", "third para"]
    words = " ".join(f"word{i}" for i in range(1000))
    chunks, _ = read(write(tmp_path, "c.txt", words.encode()), text_mode="chunk",
                     chunk_chars=500)
    texts = [r.values["text"] for r in chunks]
    assert all(len(t) <= 500 for t in texts) and len(texts) > 10
    assert " ".join(texts) == words  # cut at spaces, nothing lost


def test_parquet_streams_rows_and_nan_is_missing(tmp_path):
    table = pa.table({"text": ["a", "b", None], "score": [1.0, float("nan"), 2.0]})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=2)
    records, report = read(tmp_path / "d.parquet")
    assert [r.values for r in records] == [
        {"text": "a", "score": 1.0}, {"text": "b", "score": None}, {"text": None, "score": 2.0}]
    assert [r.row for r in records] == [1, 2, 3] and report.format == "parquet"


def test_format_detection_without_extension(tmp_path):
    assert detect_format(write(tmp_path, "x", b'{"a": 1}\n')) == "jsonl"
    assert detect_format(write(tmp_path, "y", b"a,b\n1,2\n")) == "csv"
    assert detect_format(write(tmp_path, "z", b"just words\n")) == "text"


def test_gs_path_without_cloud_layer_says_so(monkeypatch):
    # Without the cloud extra installed (its library not importable), gs:// is not registered.
    import sys

    from gemma_panel.data import sources

    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    monkeypatch.delitem(sources._REMOTE_OPENERS, "gs", raising=False)
    with pytest.raises(DatasetError, match="cloud layer"):
        resolve_path("gs://bucket/data.csv")


def test_remote_opener_seam(tmp_path):
    local = write(tmp_path, "copy.csv", b"text\nhello\n")
    register_remote_opener("testfs", lambda url: local)
    records, _ = read("testfs://bucket/copy.csv")
    assert records[0].values == {"text": "hello"}


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        resolve_path(tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="folder"):
        resolve_path(tmp_path)
