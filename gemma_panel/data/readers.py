"""One entry point for every file format: `open_records(path) -> Iterator[Record]`."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path

from gemma_panel.data.csv_reader import read_csv
from gemma_panel.data.json_reader import read_json, read_jsonl
from gemma_panel.data.parquet_reader import read_parquet
from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.sources import Record, resolve_path, sniff_text_source
from gemma_panel.data.text_reader import TextMode, read_text
from gemma_panel.data.tfds_reader import is_tfds_source, read_tfds

FORMATS = ("csv", "jsonl", "json", "text", "parquet", "tfds")
_SUFFIXES = {
    ".csv": "csv", ".tsv": "csv", ".tab": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".txt": "text", ".text": "text", ".md": "text",
    ".parquet": "parquet", ".pq": "parquet",
}


def check_encoding(encoding: str | None) -> str | None:
    """``encoding`` when Python has a codec by that name; a `DatasetError` when not."""
    if encoding is None:
        return None
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DatasetError(f"unknown encoding {encoding!r}: give a Python codec name such as "
                           "utf-8, cp1252, latin-1 or utf-16, or leave it out to have it "
                           "detected.", code="unreadable") from None
    return encoding


def detect_format(path: Path) -> str:
    """The format from the extension, or from the first bytes when it says nothing."""
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt:
        return fmt
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if text.startswith("{"):
        return "jsonl"
    if text.startswith("["):
        return "json"
    first = text.split("\n", 1)[0]
    return "csv" if any(d in first for d in ",\t;|") else "text"


def open_records(
    path: str | os.PathLike,
    report: ValidationReport,
    *,
    format: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    text_mode: TextMode = "line",
    chunk_chars: int = 2000,
    tfds_data_dir: str | os.PathLike | None = None,
) -> Iterator[Record]:
    """Open `path` and return an iterator over its records, read lazily.

    Fatal problems (no such file, empty, binary, unknown format) raise `DatasetError`
    here; problems in individual lines are added to `report` while iterating.

    Args:
        path: a local file, a URL whose scheme has a registered opener (gs://), or a
            TensorFlow Datasets source ``tfds:NAME[:SPLIT]`` (see `tfds_reader`).
        format: one of `FORMATS`; detected from the extension or content when None.
        encoding: a Python codec name; detected when None.
        delimiter: the CSV delimiter; sniffed when None.
        text_mode: for plain text, ``"line"``, ``"paragraph"`` or ``"chunk"``.
        chunk_chars: the chunk size for ``text_mode="chunk"``.
        tfds_data_dir: where ``tfds:`` datasets are prepared (see `tfds_data_dir`).
    """
    if is_tfds_source(path) or format == "tfds":
        report.format = "tfds"
        return read_tfds(os.fspath(path), report, data_dir=tfds_data_dir)
    local = resolve_path(path)
    if local.stat().st_size == 0:
        raise DatasetError(f"{local}: the file is empty (0 bytes).", code="empty_file")
    fmt = format or detect_format(local)
    if fmt == "tsv":
        fmt, delimiter = "csv", delimiter or "\t"
    if fmt not in FORMATS:
        raise DatasetError(f"{local}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    report.format = fmt
    if fmt == "parquet":
        return read_parquet(local, report)
    source = sniff_text_source(local, report, check_encoding(encoding))
    report.encoding = source.encoding
    if fmt == "csv":
        return read_csv(source, report, delimiter=delimiter)
    if fmt == "jsonl":
        return read_jsonl(source, report)
    if fmt == "json":
        return read_json(source, report)
    return read_text(source, report, mode=text_mode, chunk_chars=chunk_chars)
