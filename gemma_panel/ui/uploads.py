"""Where uploaded datasets go: size-limited, stored as plain bytes under GEMMA_PANEL_HOME.

An upload is only ever written to disk and later read by the data readers as text (or
Parquet through pyarrow); nothing uploaded is executed, imported or unpickled. Its name is
reduced to a safe file name (no folders, no leading dots, a known data extension), and a
short hash of the content keeps two different files with the same name apart.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gemma_panel.files import last_component, remove_dead_partials, safe_name, write_atomic
from gemma_panel.home import home_dir

# What the readers understand (gemma_panel.data.readers); anything else is refused.
DATA_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".txt", ".parquet")
DEFAULT_MAX_UPLOAD_MB = 200


class UploadError(ValueError):
    """An upload refused, with the reason in words."""


def max_upload_bytes() -> int:
    """The upload limit: ``GEMMA_PANEL_MAX_UPLOAD_MB`` (default 200) megabytes."""
    return int(float(os.environ.get("GEMMA_PANEL_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
               * 1024 * 1024)


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
    name = last_component(name)
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ext = "." + ext.lower() if ext else ""
    if ext not in DATA_EXTENSIONS:
        raise UploadError(f"{name!r}: not a dataset file; upload one of "
                          f"{', '.join(DATA_EXTENSIONS)}")
    stem = safe_name(stem, default="upload")
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
        raise UploadError(f"{safe}: {len(content) / 1e6:.1f} MB is over the upload limit of "
                          f"{upload_limit_text()}; give its path on the server instead, or "
                          "raise GEMMA_PANEL_MAX_UPLOAD_MB")
    if not content:
        raise UploadError(f"{safe}: the file is empty")
    folder = root if root is not None else uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(content).hexdigest()[:8]
    path = folder / f"{digest}-{safe}"
    remove_dead_partials(folder)  # uploads a killed server left half written
    return write_atomic(path, content)  # never a half-written upload under its real name
