"""Plain text files: one example per line, per paragraph, or fixed-size chunks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from gemma_panel.data.report import ValidationReport
from gemma_panel.data.sources import Record, TextSource, iter_lines

TextMode = Literal["line", "paragraph", "chunk"]


def read_text(
    source: TextSource,
    report: ValidationReport,
    mode: TextMode = "line",
    chunk_chars: int = 2000,
) -> Iterator[Record]:
    """Yield records with one column, ``text``.

    Args:
        mode: ``"line"``: each non-blank line is an example. ``"paragraph"``: blank lines
            separate examples. ``"chunk"``: the whole file (for continued pre-training)
            cut into pieces of about `chunk_chars` characters, at whitespace.
        chunk_chars: the chunk size for ``"chunk"``; tokens are about 4 characters of
            English, so 2000 characters fill a 512-token sequence.
    """
    if mode not in ("line", "paragraph", "chunk"):
        raise ValueError(f"text mode must be line, paragraph or chunk, not {mode!r}")
    lines = iter_lines(source, report)
    row = 0
    if mode == "line":
        blank = 0
        for number, line in enumerate(lines, 1):
            text = line.rstrip("\r\n")
            if not text.strip():
                blank += 1
                continue
            row += 1
            yield Record({"text": text}, row=row, line=number)
        if blank and row == 0:
            report.error("no_examples", f"all {blank} lines are blank", file=source.name)
        return
    if mode == "paragraph":
        para: list[str] = []
        start = 0
        for number, line in enumerate(lines, 1):
            if line.strip():
                if not para:
                    start = number
                para.append(line.rstrip("\r\n"))
            elif para:
                row += 1
                yield Record({"text": "\n".join(para)}, row=row, line=start)
                para = []
        if para:
            yield Record({"text": "\n".join(para)}, row=row + 1, line=start)
        return
    # chunk: carry text over between lines so chunks do not depend on line lengths.
    buf, start = "", 1
    for number, line in enumerate(lines, 1):
        if not buf.strip():
            buf, start = "", number
        buf += line
        while len(buf) >= chunk_chars:
            cut = _cut_at_space(buf, chunk_chars)
            row += 1
            yield Record({"text": buf[:cut].strip()}, row=row, line=start)
            start = number
            buf = buf[cut:]
    if buf.strip():
        yield Record({"text": buf.strip()}, row=row + 1, line=start)


def _cut_at_space(text: str, size: int) -> int:
    cut = text.rfind(" ", size // 2, size)
    if cut < 0:
        cut = text.rfind("\n", size // 2, size)
    return cut + 1 if cut >= 0 else size
