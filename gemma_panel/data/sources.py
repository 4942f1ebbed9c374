"""Opening a dataset file: where it is, whether it is text, and in which encoding.

Files are read as bytes and decoded one physical line at a time, so that a file that is
mostly UTF-8 with a few Windows-1252 lines (a common result of concatenating exports)
is still read, and each bad line is reported with its number instead of the whole read
failing on the first one.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.data.report import DatasetError, ValidationReport

SAMPLE_BYTES = 1 << 20

# Openers for remote paths by URL scheme: each returns a local Path, or an object the readers
# open like one (``open(mode)``, ``stat()``, ``suffix``) that streams the remote file. The
# cloud layer registers "gs" on first use (gemma_panel.cloud.gcs.open_gs).
RemoteOpener = Callable[[str], object]
_REMOTE_OPENERS: dict[str, RemoteOpener] = {}

_MAGIC = [
    (b"PK\x03\x04", "a ZIP archive (an .xlsx, .docx or .zip file?)"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    (b"BZh", "a bzip2-compressed file (decompress it first)"),
    (b"\xfd7zXZ", "an xz-compressed file (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file (decompress it first)"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x7fELF", "an executable"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office file (.xls/.doc)"),
]
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
# Bytes that never appear in text: C0 controls other than tab, newlines, form feed, escape.
_CONTROL = bytes(set(range(32)) - {9, 10, 12, 13, 27})


def register_remote_opener(scheme: str, opener: RemoteOpener) -> None:
    """Let `scheme://...` paths be read: `opener(url)` returns a local copy's path."""
    _REMOTE_OPENERS[scheme] = opener


def resolve_path(path: str | os.PathLike) -> Path:
    """A local path for `path`; for a remote URL, what its registered opener returns."""
    text = os.fspath(path)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme == "gs" and scheme not in _REMOTE_OPENERS:
            _register_gcs()
        opener = _REMOTE_OPENERS.get(scheme)
        if opener is None:
            if scheme == "gs":
                raise DatasetError(
                    f"{text}: reading gs:// paths needs the cloud layer's Google Cloud "
                    "Storage library: pip install \"gemma-panel[cloud]\" (or copy the "
                    "file here with gcloud storage cp and pass the local path)."
                )
            raise DatasetError(f"{text}: no reader for {scheme}:// paths.")
        opened = opener(text)
        return Path(opened) if isinstance(opened, str | os.PathLike) else opened
    p = Path(text).expanduser()
    if not p.exists():
        raise DatasetError(f"{p}: file not found.")
    if p.is_dir():
        raise DatasetError(f"{p}: is a folder; pass one data file.")
    return p


def _register_gcs() -> None:
    """Register gs:// when the Google Cloud Storage library is installed (the cloud extra)."""
    try:
        import google.cloud.storage  # noqa: F401
    except ImportError:
        return
    from gemma_panel.cloud import gcs

    gcs.register()


@dataclass(frozen=True)
class TextSource:
    """A text file and how to decode it."""

    path: Path
    encoding: str  # a Python codec name; "utf-8-sig" when the file starts with a BOM
    fallback: str = "cp1252"  # for single lines that are not valid in `encoding`

    @property
    def name(self) -> str:
        return str(self.path)


def sniff_text_source(
    path: Path, report: ValidationReport, encoding: str | None = None
) -> TextSource:
    """Decide how to decode `path`, or raise `DatasetError` when it is empty or binary."""
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(f"{path}: the file is empty (0 bytes).", code="empty_file")
    with path.open("rb") as f:
        sample = f.read(SAMPLE_BYTES)
    if encoding:
        return TextSource(path, encoding)
    for bom, codec in _BOMS:
        if sample.startswith(bom):
            return TextSource(path, codec)
    for magic, what in _MAGIC:
        if sample.startswith(magic):
            raise DatasetError(f"{path}: this is {what}, not a text data file.",
                               code="binary_file")
    if sample.startswith(b"PAR1"):
        raise DatasetError(f"{path}: this is a Parquet file; give it a .parquet extension.",
                           code="binary_file")
    utf16 = _utf16_without_bom(sample)
    if utf16:
        report.warning("encoding", f"no byte-order mark; the NUL pattern says {utf16}",
                       file=str(path))
        return TextSource(path, utf16)
    nuls = sample.count(0)
    controls = sum(sample.count(b) for b in _CONTROL)
    if controls > max(8, len(sample) // 20):
        offset = next(i for i, b in enumerate(sample) if b in _CONTROL)
        raise DatasetError(
            f"{path}: not a text file: {controls} control bytes in the first "
            f"{len(sample)} bytes ({nuls} of them NUL), the first at byte {offset}.",
            code="binary_file",
        )
    if _decodes(sample, "utf-8", final=len(sample) == size) or _mostly_utf8(sample):
        return TextSource(path, "utf-8")
    report.warning(
        "encoding",
        "the file is not UTF-8; it was read as cp1252 (Windows Western). If accented "
        "letters look wrong, pass the right encoding, or save the file as UTF-8.",
        file=str(path),
    )
    return TextSource(path, "cp1252", fallback="latin-1")


def iter_lines(source: TextSource, report: ValidationReport) -> Iterator[str]:
    """Decoded physical lines (with their line endings), problems reported by line.

    A line that is not valid in the file's encoding is decoded with the fallback and
    reported; NUL bytes are removed and reported.
    """
    if source.encoding.startswith(("utf-16", "utf-32")):
        # Not byte-line oriented: b"\n" is not a line end in these codecs.
        with source.path.open(encoding=source.encoding, errors="replace", newline="") as f:
            for number, line in enumerate(f, 1):
                if "\ufffd" in line:
                    report.warning("encoding", f"bytes not valid {source.encoding} replaced",
                                   file=source.name, line=number)
                yield _strip_nul(line, number, source, report)
        return
    encoding = "utf-8" if source.encoding == "utf-8-sig" else source.encoding
    with source.path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1 and source.encoding == "utf-8-sig":
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                line = _decode_fallback(raw, source.fallback)
                bad = raw[exc.start:exc.start + 4]
                report.warning(
                    "encoding",
                    f"bytes {bad.hex(' ')} at byte {exc.start + 1} of the line are not "
                    f"valid {encoding}; the line was read as {source.fallback} (mixed "
                    "encodings in one file?)",
                    file=source.name, line=number,
                )
            yield _strip_nul(line, number, source, report)


def _strip_nul(line: str, number: int, source: TextSource, report: ValidationReport) -> str:
    if "\x00" not in line:
        return line
    report.warning("nul_byte", f"{line.count(chr(0))} NUL byte(s) removed, the first at "
                   f"character {line.index(chr(0)) + 1}", file=source.name, line=number)
    return line.replace("\x00", "")


def _decode_fallback(raw: bytes, fallback: str) -> str:
    try:
        return raw.decode(fallback)
    except UnicodeDecodeError:  # cp1252 leaves five bytes undefined; latin-1 has all 256
        return raw.decode("latin-1")


def _decodes(sample: bytes, encoding: str, final: bool) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        decoder.decode(sample, final=final)
    except UnicodeDecodeError:
        return False
    return True


def _mostly_utf8(sample: bytes) -> bool:
    """Whether some non-ASCII lines are valid UTF-8: then the file is UTF-8 with a few
    lines in another encoding, and reading it all as cp1252 would garble the rest."""
    for line in sample.split(b"\n")[:-1]:
        if max(line, default=0) >= 0x80 and _decodes(line, "utf-8", final=True):
            return True
    return False


def _utf16_without_bom(sample: bytes) -> str | None:
    """UTF-16 text of mostly ASCII has a NUL in every other byte."""
    head = sample[: 4096 - 4096 % 2]
    if len(head) < 8:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


@dataclass
class Record:
    """One example as read from a file, before any column mapping.

    Args:
        values: column name to value, as the file has it (strings for CSV and text).
        row: 1-based example number in the file.
        line: 1-based physical line where the example starts, where the format has lines.
        broken: the reader already reported this record as structurally broken; it is
            counted but not checked further.
    """

    values: dict
    row: int
    line: int | None = None
    broken: bool = False
