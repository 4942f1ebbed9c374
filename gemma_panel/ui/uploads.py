"""Where uploaded datasets go: size-limited, stored as plain bytes under GEMMA_PANEL_HOME.

The limit holds on the server, not only in the browser: the page's drop area
(``LimitedFileDropper``) counts the bytes of each chunk as it arrives and drops a file as
soon as it passes the limit, and the server refuses any websocket message larger than one
chunk (``websocket_max_message_bytes``), so no client can make it hold more than that.

An upload is only ever written to disk and later read by the data readers as text (or
Parquet through pyarrow); nothing uploaded is executed, imported or unpickled. Its name is
reduced to a safe file name (no folders, no leading dots, a known data extension), and a
short hash of the content keeps two different files with the same name apart.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path
from typing import ClassVar

import panel as pn
import param

from gemma_panel.errors import UserError
from gemma_panel.home import home_dir

# What the readers understand (gemma_panel.data.readers); anything else is refused.
DATA_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".txt", ".parquet")
DEFAULT_MAX_UPLOAD_MB = 200
CHUNK_BYTES = 4 * 1024 * 1024  # what the browser sends per websocket message
FRAMING_BYTES = 1024 * 1024  # room for Bokeh's own messages (a recipe YAML from FileInput)


class UploadError(UserError, ValueError):
    """An upload refused, with the reason in words."""


def max_upload_bytes() -> int:
    """The upload limit: ``GEMMA_PANEL_MAX_UPLOAD_MB`` (default 200) megabytes."""
    return int(float(os.environ.get("GEMMA_PANEL_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
               * 1024 * 1024)


def websocket_max_message_bytes() -> int:
    """The largest websocket message the server takes: one upload chunk and some room."""
    return min(CHUNK_BYTES, max_upload_bytes()) + FRAMING_BYTES


def _over_limit(name: str, nbytes: int) -> str:
    return (f"{name}: {nbytes / 1e6:.1f} MB is over the upload limit of "
            f"{upload_limit_text()}; give its path on the server instead, or raise "
            "GEMMA_PANEL_MAX_UPLOAD_MB")


def upload_limit_text() -> str:
    """The limit as FileDropper and people read it, e.g. ``200MB``."""
    return f"{max_upload_bytes() // (1024 * 1024)}MB"


def uploads_dir() -> Path:
    path = home_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sanitize_filename(name: str) -> str:
    """A safe file name from whatever the browser sent: ``../../x.csv`` -> ``x.csv``.

    Raises:
        UploadError: the extension is not a data format the readers know.
    """
    name = unicodedata.normalize("NFKC", str(name)).replace("\\", "/").split("/")[-1]
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ext = "." + ext.lower() if ext else ""
    if ext not in DATA_EXTENSIONS:
        raise UploadError(f"{name!r}: not a dataset file; upload one of "
                          f"{', '.join(DATA_EXTENSIONS)}")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("._-")[:80] or "upload"
    return stem + ext


def save_upload(name: str, content: bytes | str, root: Path | None = None) -> Path:
    """Store an uploaded file and return its path: ``uploads/<hash8>-<safe name>``.

    Raises:
        UploadError: too large, empty, or not a dataset file.
    """
    if isinstance(content, str):  # the browser decoded a text file as UTF-8; undo that
        content = content.encode("utf-8")
    safe = sanitize_filename(name)
    limit = max_upload_bytes()
    if len(content) > limit:
        raise UploadError(_over_limit(safe, len(content)))
    if not content:
        raise UploadError(f"{safe}: the file is empty")
    folder = root if root is not None else uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(content).hexdigest()[:8]
    path = folder / f"{digest}-{safe}"
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(content)
    os.replace(tmp, path)  # never a half-written upload under its real name
    return path


class LimitedFileDropper(pn.widgets.FileDropper):
    """Panel's FileDropper, counting the bytes as they arrive.

    Panel keeps every chunk of a file in memory until the last one; here the chunks of the
    files in flight may add up to the upload limit and no more. A file that would pass it
    is dropped at once and ``refused`` says why.
    """

    refused = param.String(default="", doc="Why the last upload was dropped ('' if none).")

    _rename: ClassVar = {**pn.widgets.FileDropper._rename, "refused": None}  # server only

    def __init__(self, **params):
        params.setdefault("max_file_size", upload_limit_text())  # the browser's own check
        params.setdefault("chunk_size", CHUNK_BYTES)
        super().__init__(**params)
        self._received: dict[str, int] = {}

    def _process_event(self, event) -> None:
        if event.event_name == "upload_event":
            data = event.data
            name, chunk = data["name"], data["chunk"]
            if chunk == 1:
                self.refused, self._received[name] = "", 0
            elif name not in self._received:  # the rest of a file already dropped
                return
            nbytes = self._received[name] + len(data["data"])
            if sum(self._received.values()) - self._received[name] + nbytes > \
                    max_upload_bytes():
                del self._received[name]
                self._file_buffer.pop(name, None)
                self.refused = _over_limit(_shown_name(name), nbytes)
                return
            self._received[name] = nbytes
            if chunk == data["total_chunks"]:
                del self._received[name]
        super()._process_event(event)


def _shown_name(name: str) -> str:
    """A file name as sent by a browser, safe to show in a message."""
    return str(name).replace("\\", "/").split("/")[-1][:120]
