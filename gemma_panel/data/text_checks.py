"""Checks on one text value: damaged encodings, binary content, control-token text."""

from __future__ import annotations

import re
from typing import NamedTuple

from gemma_panel.data.report import Severity


class TextIssue(NamedTuple):
    code: str
    severity: Severity
    message: str


_CONTROL_TOKENS = ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# UTF-8 bytes shown as cp1252/Latin-1: a lead byte (Â..ô) then continuation bytes, which
# cp1252 shows as € ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ Ž ' ' " " • – — ˜ ™ š › œ ž Ÿ or U+00A0..U+00BF.
_MOJIBAKE = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
    "\u02c6\u02dc\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030"
    "\u2039\u203a\u20ac\u2122]+"
)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}={0,2}")


def inspect_text(text: str) -> list[TextIssue]:
    """Everything suspicious about one value; an empty list when it looks like clean text."""
    issues: list[TextIssue] = []
    for token in _CONTROL_TOKENS if "<" in text else ():
        at = text.find(token)
        if at >= 0:
            issues.append(TextIssue(
                "control_token", "error",
                f"contains the text {token} at character {at + 1}: it would be read as "
                "Gemma's control token and break the turn structure; remove it"))
            break
    controls = _CONTROL_CHARS.findall(text) if _CONTROL_CHARS.search(text) else None
    if controls:
        at = _CONTROL_CHARS.search(text).start()
        issues.append(TextIssue(
            "non_text", "warning",
            f"{len(controls)} control character(s), the first U+{ord(controls[0]):04X} at "
            f"character {at + 1}: binary data pasted into text?"))
    if "data:" in text and ";base64," in text or len(text) >= 200 and _BASE64_RUN.search(text):
        issues.append(TextIssue("non_text", "warning",
                                "contains a long base64 run: encoded binary data, not text"))
    if text.isascii():
        return issues  # no replacement characters or mojibake in ASCII
    if "\ufffd" in text:
        issues.append(TextIssue(
            "replacement_char", "warning",
            f"{text.count(chr(0xFFFD))} replacement character(s) \ufffd at character "
            f"{text.index(chr(0xFFFD)) + 1}: the text was decoded wrongly before this file "
            "was written, and the original letters are lost"))
    suspect = _MOJIBAKE.search(text)
    if suspect and repair_mojibake(text) is not None:
        bad = suspect.group()
        issues.append(TextIssue(
            "mojibake", "warning",
            f"{bad!r} looks like UTF-8 read as cp1252 (should be "
            f"{repair_mojibake(bad)!r}); re-save the source as UTF-8"))
    return issues


def repair_mojibake(text: str) -> str | None:
    """The text with UTF-8-read-as-cp1252 runs undone, or None when there are none."""
    changed = False

    def undo(match: re.Match) -> str:
        nonlocal changed
        run = match.group()
        for codec in ("cp1252", "latin-1"):
            try:
                fixed = run.encode(codec).decode("utf-8")
            except UnicodeError:
                continue
            changed = True
            return fixed
        return run

    out = _MOJIBAKE.sub(undo, text)
    return out if changed else None
