"""An example in the library's own terms, whatever the file called its columns."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from gemma_panel.data.messages import Turn


@dataclass
class Example:
    """One training example after column mapping.

    Args:
        prompt, input, response, text, label: the mapped values (None when absent).
        messages: chat turns, for chat data.
        fields: every column of the source row as text, for custom templates.
        row: the 1-based row in the source file; line: its line, where there is one.
        augmented: made by augmentation; such rows never enter the validation split.
        origin: for an augmented row, the row it was made from.
        augmentation: for an augmented row, what made it (``"swap"``,
            ``"back_translate:fr"``, ...).
        message_images: the image references of the messages' image parts, in order
            (their text holds only the image token).
    """

    prompt: str | None = None
    input: str | None = None
    response: str | None = None
    text: str | None = None
    label: str | None = None
    messages: list[Turn] | None = None
    fields: dict[str, str] = field(default_factory=dict)
    row: int = 0
    line: int | None = None
    augmented: bool = False
    origin: int | None = None
    augmentation: str | None = None
    message_images: tuple[str, ...] = ()

    @property
    def user_text(self) -> str:
        """What the user says: the prompt with its input appended, or the text."""
        if self.messages:
            return next((t.content for t in self.messages if t.role == "user"), "")
        base = self.prompt if self.prompt is not None else (self.text or "")
        return f"{base}\n\n{self.input}" if self.input else base

    def content_key(self) -> str:
        """Everything that makes this example what it is, for exact-duplicate checks: its
        text and, where the row has an image column, the images it names (the same
        question about two pictures is two examples)."""
        from gemma_panel.data.images import image_column

        if self.messages:
            key = "\x1f".join("\x1e".join(map(str, _turn_dict(t).values()))
                              for t in self.messages)
            if self.message_images:
                key += "\x1d" + "\x1e".join(self.message_images)
        else:
            key = "\x1f".join(v or "" for v in (self.prompt, self.input, self.response,
                                                self.text, self.label))
        column = image_column(self.fields) if self.fields else None
        return f"{key}\x1d{self.fields[column]}" if column else key

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in
                               ("prompt", "input", "response", "text", "label")
                               if getattr(self, k) is not None}
        if self.messages is not None:
            out["messages"] = [_turn_dict(t) for t in self.messages]
        out["row"] = self.row
        if self.augmented:
            out["augmented"] = True
            out["origin"] = self.origin
            out["augmentation"] = self.augmentation
        return out


def _turn_dict(turn: Turn) -> dict[str, Any]:
    """A turn as JSON data: role and content, and its tool calls or tool name if any."""
    out: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.tool_calls:
        out["tool_calls"] = [{"name": c.name, "arguments": c.arguments}
                             for c in turn.tool_calls]
    if turn.name is not None:
        out["name"] = turn.name
    return out


_NON_WORD = re.compile(r"[\W_]+")
# The same for ASCII text, without the regex: every ASCII non-letter/digit becomes a space.
_ASCII_NON_WORD = str.maketrans({chr(i): " " for i in range(128) if not chr(i).isalnum()})


def near_key(text: str) -> str:
    """Text with case, accents' composition, punctuation and spacing taken out: two
    examples with the same near key differ only in those."""
    if text.isascii():  # most rows; NFKC and casefold change nothing there beyond lower()
        return " ".join(text.lower().translate(_ASCII_NON_WORD).split())
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", text).strip()
