"""JSON Lines and JSON array files, streamed, with every broken line reported."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from gemma_panel.data.report import ValidationReport
from gemma_panel.data.sources import Record, TextSource, iter_lines

_CHUNK_LINES = 2048
_TOO_DEEP = (f"nested deeper than the JSON reader can follow (about {sys.getrecursionlimit()} "
             "levels of [ or {); no training example is that deep: check how the file was "
             "made")


def read_jsonl(source: TextSource, report: ValidationReport) -> Iterator[Record]:
    """Yield one `Record` per JSON object line; broken lines are reported and skipped."""
    name = source.name
    blank, first_blank, row = 0, None, 0
    for number, line in enumerate(iter_lines(source, report), 1):
        if not line.strip():
            blank += 1
            first_blank = first_blank or number
            continue
        row += 1
        try:
            value = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            report.error("broken_json", _describe(exc, line), file=name, line=number)
            yield Record({}, row=row, line=number, broken=True)
            continue
        except RecursionError:
            report.error("broken_json", _TOO_DEEP, file=name, line=number)
            yield Record({}, row=row, line=number, broken=True)
            continue
        if not isinstance(value, dict):
            report.error("not_an_object", f"expected a JSON object {{...}}, found "
                         f"{_kind(value)}", file=name, line=number)
            yield Record({}, row=row, line=number, broken=True)
            continue
        yield Record(value, row=row, line=number)
    if blank:
        report.warning("blank_lines", f"{blank} blank line(s) skipped, the first at line "
                       f"{first_blank}", file=name, line=first_blank)


def read_json(source: TextSource, report: ValidationReport) -> Iterator[Record]:
    """Yield the objects of a JSON file: a top-level array, or JSON Lines saved as .json.

    The array is parsed one element at a time, so a large file is not held whole.
    """
    if _first_char(source) == "{":
        # Either one object, or JSON Lines under a .json name.
        yield from _read_object_file(source, report)
        return
    buf = _ArrayText(iter_lines(source, report))
    name = source.name
    pos = buf.skip_ws(0)
    if pos >= len(buf.text):
        report.error("no_examples", "the file holds only whitespace", file=name)
        return
    if buf.text[pos] != "[":
        report.error("broken_json", f"expected a JSON array '[' or object '{{', found "
                     f"{buf.text[pos]!r}", file=name, line=buf.line_at(pos))
        return
    yield from _array_elements(buf, pos + 1, report, name)


class _ArrayText:
    """The part of a JSON array not parsed yet, read on in chunks of lines as needed.

    ``base_line`` is the file line that ``text`` starts on.
    """

    def __init__(self, lines: Iterator[str]):
        self.lines = lines
        self.text = ""
        self.base_line = 1

    def more(self) -> bool:
        """Read the next chunk of lines; False at the end of the file."""
        chunk = [line for _, line in zip(range(_CHUNK_LINES), self.lines)]
        self.text += "".join(chunk)
        return bool(chunk)

    def skip_ws(self, pos: int) -> int:
        """The position of the next non-blank character (``len(text)`` at the end)."""
        while True:
            while pos < len(self.text) and self.text[pos] in " \t\r\n":
                pos += 1
            if pos < len(self.text) or not self.more():
                return pos

    def line_at(self, pos: int) -> int:
        return self.base_line + self.text.count("\n", 0, pos)

    def drop(self, pos: int) -> None:
        """Forget what comes before ``pos`` (parsed), so memory stays bounded by one element."""
        self.base_line = self.line_at(pos)
        self.text = self.text[pos:]


def _array_elements(buf: _ArrayText, pos: int, report: ValidationReport,
                    name: str) -> Iterator[Record]:
    """The elements of the array whose first one starts at or after ``pos``."""
    decoder = json.JSONDecoder()
    row = 0
    while True:
        pos = buf.skip_ws(pos)
        if pos < len(buf.text) and buf.text[pos] == "]":
            return
        decoded = _decode_element(buf, pos, decoder, row, report, name)
        if decoded is None:
            return
        value, end = decoded
        row += 1
        line = buf.line_at(pos)
        if isinstance(value, dict):
            yield Record(value, row=row, line=line)
        else:
            report.error("not_an_object", f"array element {row} is {_kind(value)}, not an "
                         "object", file=name, line=line)
            yield Record({}, row=row, line=line, broken=True)
        buf.drop(buf.skip_ws(end))
        pos = 0
        if not buf.text:
            report.error("broken_json", "the array is not closed with ']' (file cut off?)",
                         file=name, line=buf.base_line)
            return
        if buf.text[0] == ",":
            pos = 1
        elif buf.text[0] != "]":
            report.error("broken_json", f"expected ',' or ']' after element {row}, found "
                         f"{buf.text[0]!r}", file=name, line=buf.base_line)
            return


def _decode_element(buf: _ArrayText, pos: int, decoder: json.JSONDecoder, row: int,
                    report: ValidationReport, name: str) -> tuple[object, int] | None:
    """(value, end) of the element at ``pos``, reading on until it is whole; None when it
    cannot be parsed (reported: nothing after it is read)."""
    while True:
        try:
            return decoder.raw_decode(buf.text, pos)
        except RecursionError:  # the element's end is unknown: nothing after it is read
            report.error("broken_json", f"array element {row + 1}: {_TOO_DEEP}",
                         file=name, line=buf.line_at(pos))
            return None
        except json.JSONDecodeError as exc:
            if buf.more():
                continue
            text = buf.text
            line = buf.line_at(exc.pos)
            rest = text[text.rfind("\n", 0, exc.pos) + 1:]
            report.error("broken_json", _describe(exc, rest.split("\n", 1)[0], exc.pos
                         - text.rfind("\n", 0, exc.pos)), file=name, line=line)
            return None


def _read_object_file(source: TextSource, report: ValidationReport) -> Iterator[Record]:
    text = "".join(iter_lines(source, report))
    try:
        value = json.loads(text)
    except RecursionError:
        report.error("broken_json", _TOO_DEEP, file=source.name, line=1)
        return
    except json.JSONDecodeError as exc:
        if "Extra data" in exc.msg:  # a second object follows: this is JSON Lines
            yield from read_jsonl(source, ValidationReport(source=source.name))
            return
        line = text.split("\n")[exc.lineno - 1] if exc.lineno else ""
        report.error("broken_json", _describe(exc, line), file=source.name, line=exc.lineno)
        return
    lists = {k: v for k, v in value.items() if isinstance(v, list)
             and v and all(isinstance(x, dict) for x in v)}
    if "messages" in value or "conversations" in value or not lists:
        yield Record(value, row=1, line=1)  # one chat, or one example
        return
    if len(lists) > 1:
        report.error("unknown_columns", f"the object holds several lists of examples "
                     f"({', '.join(lists)}); save the one to use as a top-level array",
                     file=source.name, line=1)
        return
    (items,) = lists.values()
    for row, item in enumerate(items, 1):
        yield Record(item, row=row, line=None)


def _first_char(source: TextSource) -> str:
    with source.path.open("rb") as f:
        head = f.read(1 << 16)
    text = head.decode(source.encoding, errors="ignore").lstrip("\ufeff \t\r\n")
    return text[:1]


def _describe(exc: json.JSONDecodeError, line: str, col: int | None = None) -> str:
    col = col if col is not None else exc.colno
    stripped = line.rstrip("\r\n")
    if col >= len(stripped) and exc.msg.startswith(("Expecting", "Unterminated")):
        return f"the JSON ends early at character {col} ({exc.msg}): the line is cut off"
    near = stripped[max(0, col - 20): col + 20]
    msg = exc.msg.removesuffix(" at")
    return f"{msg} at character {col}, near {near!r}"


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")
