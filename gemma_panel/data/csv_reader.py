"""CSV and TSV files, streamed: delimiter sniffed, quoted multi-line fields, any encoding."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator

from gemma_panel.data.report import ValidationReport
from gemma_panel.data.sources import Record, TextSource, iter_lines

_DELIMITERS = ",;\t|"
_SNIFF_LINES = 200
# A long document in one cell is legitimate (and reported as overlong later); the csv
# module's default 128 KiB field limit would instead stop the read with an error.
_FIELD_LIMIT = 1 << 30


def read_csv(
    source: TextSource, report: ValidationReport, delimiter: str | None = None
) -> Iterator[Record]:
    """Yield one `Record` per CSV data row; the first row is the header.

    Problems (wrong field counts, quotes that never close, blank lines) are added to
    `report` with their line numbers; reading goes on past them.
    """
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    lines = iter_lines(source, report)
    head = list(itertools.islice(lines, _SNIFF_LINES))
    if delimiter is None:
        delimiter = sniff_delimiter(head, tsv=source.path.suffix.lower() == ".tsv")
    # strict: a quote that never closes is an error at the end of the file, instead of
    # the rest of the file silently becoming one field.
    reader = csv.reader(itertools.chain(head, lines), delimiter=delimiter, strict=True)
    name = source.name
    header: list[str] | None = None
    blank, first_blank = 0, None
    row_number = 0
    consumed = 0  # physical lines consumed before the current record
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            start = consumed + 1
            _report_syntax_error(report, name, exc, start, reader.line_num)
            consumed = reader.line_num
            if header is not None:
                row_number += 1
                yield Record({}, row=row_number, line=start, broken=True)
            continue
        start, end = consumed + 1, reader.line_num
        consumed = end
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            blank += 1
            first_blank = first_blank or start
            continue
        if header is None:
            header = _clean_header(fields, report, name)
            continue
        row_number += 1
        broken = _field_count_wrong(report, name, header, fields, start, end, delimiter)
        values = dict(zip(header, fields))
        for missing in header[len(fields):]:
            values[missing] = None
        yield Record(values, row=row_number, line=start, broken=broken)
    _report_end(report, name, header, blank, first_blank)


def _report_syntax_error(report: ValidationReport, name: str, exc: csv.Error, start: int,
                         end: int) -> None:
    """A record the csv module cannot parse, starting on line `start`, read to `end`."""
    if "unexpected end of data" in str(exc):
        report.error(
            "csv_unbalanced_quote",
            f"a quote opened in the record starting on line {start} never closes: "
            f"lines {start}-{end} were swallowed into one field. "
            "Check the quotes on that line.",
            file=name, line=start,
        )
    else:
        report.error("csv_field_count", f"CSV syntax error: {exc} (a quote inside "
                     "a quoted field must be doubled: \"\")", file=name, line=start)


def _field_count_wrong(report: ValidationReport, name: str, header: list[str],
                       fields: list[str], start: int, end: int, delimiter: str) -> bool:
    """Whether a record has other than the header's field count (reported if so)."""
    if end > start and len(fields) != len(header):
        report.error(
            "csv_unbalanced_quote",
            f"the record starting on line {start} runs to line {end} and has "
            f"{len(fields)} fields, not {len(header)}: a quote on line {start} is "
            "probably unbalanced.",
            file=name, line=start,
        )
        return True
    if len(fields) != len(header):
        report.error(
            "csv_field_count",
            f"expected {len(header)} fields like the header, found {len(fields)} "
            f"(delimiter {delimiter!r}; a field with a delimiter needs quotes)",
            file=name, line=start,
        )
        return True
    return False


def _report_end(report: ValidationReport, name: str, header: list[str] | None, blank: int,
                first_blank: int | None) -> None:
    """What only the end of the file shows: blank lines skipped, no header at all."""
    if blank:
        report.warning("blank_lines", f"{blank} blank line(s) skipped, the first at line "
                       f"{first_blank}", file=name, line=first_blank)
    if header is None:
        report.error("no_examples", "no header and no rows: the file has only blank lines",
                     file=name)


def sniff_delimiter(lines: list[str], tsv: bool = False) -> str:
    """The delimiter of a CSV whose first lines are `lines` (comma when unsure)."""
    sample = "".join(lines)[: 64 * 1024]
    if tsv:
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        pass
    # The sniffer gives up on files with many multi-line fields; the header line is
    # usually plain, so count candidates there.
    first = next((line for line in lines if line.strip()), "")
    counts = {d: first.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _clean_header(fields: list[str], report: ValidationReport, name: str) -> list[str]:
    header, seen = [], set()
    for i, col in enumerate(fields, 1):
        col = col.strip()
        if not col:
            col = f"column_{i}"
            report.warning("unknown_columns", f"header field {i} is empty; named it {col!r}",
                           file=name, line=1, column=col)
        if col in seen:
            report.warning("unknown_columns", f"column name {col!r} appears twice; the "
                           f"second is named {col}_{i}", file=name, line=1, column=col)
            col = f"{col}_{i}"
        seen.add(col)
        header.append(col)
    return header
