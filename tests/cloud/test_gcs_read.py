"""gs:// data read streamed from gcp-storage-emulator: the same reports as the local file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemma_panel.cli import main
from gemma_panel.cloud import gcs as gcs_module
from gemma_panel.cloud.gcs import GsUrl, StorageAccessError, open_gs, parse_gs_url
from gemma_panel.errors import UserError

QUICKSTART = Path(__file__).parents[2] / "examples" / "instruction" / "unit_conversions.jsonl"


def test_gs_urls_parse_and_bad_ones_say_why():
    assert parse_gs_url("gs://my-bucket/data/train.jsonl") == GsUrl("my-bucket",
                                                                  "data/train.jsonl")
    assert str(GsUrl("b1x", "runs").child("r1/ckpt")) == "gs://b1x/runs/r1/ckpt"
    with pytest.raises(UserError, match="not a valid bucket name"):
        parse_gs_url("gs://Bad_Bucket!/x")
    with pytest.raises(UserError, match="not a gs:// path"):
        parse_gs_url("/tmp/x")


def _upload(bucket, name: str, data: bytes) -> str:
    bucket.blob(name).upload_from_string(data)
    return f"gs://{bucket.name}/{name}"


def _with_problems() -> bytes:
    """The quickstart data plus a broken line, a blank line and a cp1252 line."""
    return (QUICKSTART.read_bytes() + b'{"prompt": "cut off\n\n'
            + b'{"prompt": "caf\xe9", "response": "x"}\n')


def _check_json(capsys, path: str) -> tuple[int, dict]:
    code = main(["data", "check", path, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_data_check_on_gs_path_gives_the_local_report(gcs, tmp_path, capsys):
    _, bucket = gcs
    data = _with_problems()
    local = tmp_path / "train.jsonl"
    local.write_bytes(data)
    url = _upload(bucket, "data/train.jsonl", data)
    local_code, local_report = _check_json(capsys, str(local))
    gs_code, gs_report = _check_json(capsys, url)
    assert local_report["rows_read"] == 316 and local_report["n_errors"] >= 1
    as_local = json.loads(json.dumps(gs_report).replace(url, str(local)))
    assert (gs_code, as_local) == (local_code, local_report)


def test_data_prepare_on_gs_path_writes_the_local_result(gcs, tmp_path):
    _, bucket = gcs
    url = _upload(bucket, "quickstart.jsonl", QUICKSTART.read_bytes())
    assert main(["data", "prepare", str(QUICKSTART), "--out", str(tmp_path / "a")]) == 0
    assert main(["data", "prepare", url, "--out", str(tmp_path / "b")]) == 0
    for name in ("train.jsonl", "validation.jsonl"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


def test_reads_are_ranged_not_a_whole_copy(gcs, monkeypatch):
    from google.cloud.storage import Blob

    _, bucket = gcs
    line = b'{"prompt": "how many grams in a pound?", "response": "453.6"}\n'
    url = _upload(bucket, "big.jsonl", line * 40_000)  # 2.6 MB
    ranges = []
    real = Blob.download_as_bytes

    def spy(self, *args, **kwargs):
        ranges.append((kwargs.get("start"), kwargs.get("end")))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Blob, "download_as_bytes", spy)
    monkeypatch.setattr(gcs_module, "READ_CHUNK", 256 * 1024)
    with open_gs(url).open("rb") as f:
        assert f.readline() == line
    assert ranges == [(0, 256 * 1024)]  # one chunk fetched for the first line, not 2.6 MB


def test_missing_bucket_is_one_sentence(gcs):
    from gemma_panel.data import check_dataset

    with pytest.raises(StorageAccessError) as caught:
        check_dataset("gs://no-such-bucket/train.jsonl")
    message = str(caught.value)
    assert "the bucket no-such-bucket does not exist" in message
    assert "anonymous (the storage emulator at http://127.0.0.1:" in message


def test_missing_object_names_the_bucket(gcs):
    client, bucket = gcs
    with pytest.raises(StorageAccessError, match=f"no such object in bucket {bucket.name}"):
        open_gs(f"gs://{bucket.name}/nope.jsonl", client)


def test_cli_prints_the_sentence_and_exits_2(gcs, capsys):
    from gemma_panel.cli import build_parser, run_command

    args = build_parser().parse_args(["data", "check", "gs://no-such-bucket/x.jsonl"])
    assert run_command(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemma-panel: the bucket no-such-bucket does not exist")


def _parquet_bytes(tmp_path) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": [f"q{i}" for i in range(50)] + [None],
                      "response": [f"a{i}" for i in range(51)]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=10)
    return (tmp_path / "t.parquet").read_bytes()


FILES = {
    "utf16.csv": "prompt,response\nhi,there\ncafé,crème\n".encode("utf-16"),
    "cp1252.csv": b"prompt,response\nna\xefve,ok\nfine,\n",
    "array.json": b'[{"prompt": "a", "response": "b"},\n {"prompt": "c"}, 3]\n',
    "notes.txt": b"one line\n\nanother line\n",
}


@pytest.mark.parametrize("name", [*FILES, "t.parquet"])
def test_every_format_reads_the_same_from_gcs(gcs, tmp_path, capsys, name):
    _, bucket = gcs
    data = _parquet_bytes(tmp_path) if name == "t.parquet" else FILES[name]
    local = tmp_path / name
    local.write_bytes(data)
    url = _upload(bucket, f"formats/{name}", data)
    local_code, local_report = _check_json(capsys, str(local))
    gs_code, gs_report = _check_json(capsys, url)
    assert local_report["rows_read"] >= 2
    as_local = json.loads(json.dumps(gs_report).replace(url, str(local)))
    assert (gs_code, as_local) == (local_code, local_report)
