"""`check_dataset`: read a file once, in a stream, and report everything wrong with it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from gemma_panel.data.columns import ColumnMapping, detect_columns
from gemma_panel.data.example import Example, near_key
from gemma_panel.data.images import ImageChecker
from gemma_panel.data.policies import MissingPolicy, resolve_missing_policies
from gemma_panel.data.readers import open_records
from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.sources import Record
from gemma_panel.data.templates import Template, template_for_task
from gemma_panel.data.text_reader import TextMode
from gemma_panel.data.tokenizer import TextTokenizer
from gemma_panel.data.validate import RowValidator

_PEEK_ROWS = 100


@dataclass
class ReadOptions:
    """How to read a file; every field is detected when left at None.

    Args:
        format: csv, jsonl, json, text or parquet (``tfds:`` sources need none).
        encoding: a Python codec name, e.g. ``"cp1252"``.
        delimiter: the CSV delimiter.
        text_mode: plain text as one example per ``"line"``, ``"paragraph"`` or ``"chunk"``.
        chunk_chars: the chunk size in characters for ``"chunk"``.
        columns: role to column overrides, e.g. ``{"prompt": "q", "response": "a"}``.
        tfds_data_dir: the folder holding prepared TFDS datasets, for ``tfds:NAME[:SPLIT]``
            sources; ``$GEMMA_PANEL_TFDS_DIR`` or ``<GEMMA_PANEL_HOME>/tfds`` when None.
        tools: read chat messages' tool calls and tool results (for a model family whose
            chat format has them, Gemma 4); without it they are an error (``tool_calls``).
    """

    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    text_mode: TextMode = "line"
    chunk_chars: int = 2000
    columns: Mapping[str, str | None] = field(default_factory=dict)
    tfds_data_dir: str | None = None
    tools: bool = False


@dataclass
class Scan:
    """What one pass over a file found."""

    report: ValidationReport
    mapping: ColumnMapping | None = None
    validator: RowValidator | None = None
    examples: list[Example] = field(default_factory=list)


def check_dataset(
    path: str | os.PathLike,
    *,
    read: ReadOptions | None = None,
    template: Template | None = None,
    tokenizer: TextTokenizer | None = None,
    sequence_length: int | None = None,
    max_chars: int | None = 200_000,
    missing: str | MissingPolicy | dict | None = None,
    min_label_examples: int = 5,
    validation_path: str | os.PathLike | None = None,
) -> ValidationReport:
    """Read `path` in a stream and report every problem, with file, line and column.

    Never raises for a problem in the data: an unreadable, empty or binary file gives a
    report with one error. The file is only read.

    Args:
        read: how to read the file (format, encoding, column overrides, ...).
        template: the prompt template; the task's default when None.
        tokenizer, sequence_length: measure examples in tokens and report overlong ones.
        max_chars: without a tokenizer, report examples longer than this (the default
            is far past any Gemma context: it catches a whole file on one line).
        missing: a missing-value policy for all roles or per role (see `MissingPolicy`);
            missing values are errors without one.
        min_label_examples: warn about label classes smaller than this.
        validation_path: a separate validation file, checked too, and for prompts that
            also appear in `path`.

    Example:

    ```python
    report = check_dataset("train.csv", read=ReadOptions(columns={"prompt": "q"}))
    print(report.to_text())
    ```
    """
    read = read or ReadOptions()
    options = {"template": template, "tokenizer": tokenizer,
               "sequence_length": sequence_length, "max_chars": max_chars,
               "missing": resolve_missing_policies(missing),
               "min_label_examples": min_label_examples}
    train_prompts: set[int] = set()
    # Training prompts are remembered only when there is a validation file to compare.
    remember = None if validation_path is None else (
        lambda e: train_prompts.add(hash(near_key(e.user_text))))
    scan = scan_file(path, read, keep=False, on_example=remember, **options)
    report = scan.report
    if validation_path is not None:
        val_read = ReadOptions(**{**read.__dict__, "format": None})
        leaks: list[Example] = []
        val = scan_file(validation_path, val_read, keep=False, on_example=lambda e: (
            hash(near_key(e.user_text)) in train_prompts and leaks.append(e)), **options)
        for e in leaks:
            val.report.warning("split_leak", "this prompt is also in the training file",
                               line=e.line, row=e.row)
        report.merge(val.report)
    return report


def scan_file(
    path: str | os.PathLike,
    read: ReadOptions,
    *,
    keep: bool,
    on_example: Callable[[Example], object] | None = None,
    template: Template | None = None,
    tokenizer: TextTokenizer | None = None,
    sequence_length: int | None = None,
    max_chars: int | None = None,
    missing: dict[str, MissingPolicy] | None = None,
    min_label_examples: int = 5,
) -> Scan:
    """One streaming pass: records, column mapping, row checks; examples kept if `keep`."""
    report = ValidationReport(source=os.fspath(path))
    scan = Scan(report)
    opened = _open_head(path, read, report)
    if opened is None:
        return scan
    head, records = opened
    if not head:
        if not report.has("no_examples"):
            report.error("no_examples", "the file has no examples"
                         + (" (only a header)" if report.format == "csv" else ""))
        return scan
    mapping = _mapping_or_report(head, records, read, report)
    if mapping is None:
        return scan
    scan.mapping = mapping
    report.task, report.columns = mapping.task, mapping.as_dict()
    if template is None and tokenizer is not None:
        labels = sorted({str(r.values.get(mapping.label)) for r in head} - {"None"}) \
            if mapping.label else []
        template = template_for_task(mapping.task, labels)
    scan.validator = RowValidator(report, mapping, missing=missing, template=template,
                                  tools=read.tools,
                                  tokenizer=tokenizer, sequence_length=sequence_length,
                                  max_chars=max_chars, min_label_examples=min_label_examples)
    images = ImageChecker.for_file(report, path, _columns(head), mapping)
    _check_rows(scan, itertools.chain(head, records), on_example, keep, images)
    if report.rows_usable == 0 and not report.has("no_examples"):
        report.error("no_examples", "no row can be used; see the errors above")
    return scan


def _open_head(path, read: ReadOptions,
               report: ValidationReport) -> tuple[list[Record], Iterator[Record]] | None:
    """(the first rows, the rest) of a file; None when it cannot be read (reported)."""
    try:
        records = open_records(path, report, format=read.format, encoding=read.encoding,
                               delimiter=read.delimiter, text_mode=read.text_mode,
                               chunk_chars=read.chunk_chars,
                               tfds_data_dir=read.tfds_data_dir)
        head = list(itertools.islice(records, _PEEK_ROWS))
    except DatasetError as exc:
        message = str(exc)
        prefix = f"{report.source}: "
        report.error(exc.code, message.removeprefix(prefix))
        return None
    return head, records


def _mapping_or_report(head: list[Record], records: Iterator[Record], read: ReadOptions,
                       report: ValidationReport) -> ColumnMapping | None:
    """The file's column mapping; None when it has none (reported, and the rest of the
    file still read, so broken lines, encodings etc. in it are reported too)."""
    columns = _columns(head)
    try:
        return detect_columns(columns, read.columns)
    except DatasetError as exc:
        report.error(exc.code, str(exc), line=head[0].line)
        for _ in records:
            report.rows_read += 1
        report.rows_read += len(head)
        return None


def _check_rows(scan: Scan, records: Iterable[Record],
                on_example: Callable[[Example], object] | None, keep: bool,
                images: ImageChecker | None = None) -> None:
    """Every row through the scan's validator (and its images through `images`); usable
    ones to `on_example`, kept if `keep`."""
    report, validator = scan.report, scan.validator
    for record in records:
        if images is not None and not record.broken:
            images.check(record)
        try:
            example = validator.check(record)
        except DatasetError as exc:  # e.g. a custom template field the row lacks
            report.error("missing_value", str(exc), line=record.line, row=record.row)
            continue
        if example is None:
            continue
        if on_example is not None:
            on_example(example)
        if keep:
            scan.examples.append(example)
    validator.finish()
    if images is not None:
        images.finish()


def head_examples(
    path: str | os.PathLike,
    read: ReadOptions | None = None,
    n: int = 5,
    *,
    missing: str | MissingPolicy | dict | None = None,
) -> list[Example]:
    """The first `n` usable examples of a file, reading no further than needed.

    For previews (augmentation, templates); problems are not reported: use
    `check_dataset` for that. Raises `DatasetError` when the file cannot be read at all.
    """
    read = read or ReadOptions()
    report = ValidationReport(source=os.fspath(path))
    records = open_records(path, report, format=read.format, encoding=read.encoding,
                           delimiter=read.delimiter, text_mode=read.text_mode,
                           chunk_chars=read.chunk_chars, tfds_data_dir=read.tfds_data_dir)
    head = list(itertools.islice(records, _PEEK_ROWS))
    if not head:
        raise DatasetError(f"{report.source}: the file has no examples.", code="no_examples")
    mapping = detect_columns(_columns(head), read.columns)
    validator = RowValidator(report, mapping, missing=resolve_missing_policies(missing),
                             tools=read.tools)
    out: list[Example] = []
    for record in itertools.chain(head, records):
        if len(out) >= n:
            break
        try:
            example = validator.check(record)
        except DatasetError:
            continue
        if example is not None:
            out.append(example)
    return out


def _columns(head: list[Record]) -> list[str]:
    seen: dict[str, None] = {}
    for record in head:
        for key in record.values:
            seen.setdefault(key, None)
    return list(seen)
