"""An export's folder: written aside, described by a manifest, moved into place whole.

Every export is built in a partial folder beside its target (``gemma_panel.files``). The
files are written, verified by loading them back, listed with their sizes and SHA-256 in
``manifest.json`` (written last), and the folder is renamed to its final name in one
``os.rename``. So a failure or a kill at any moment leaves either nothing or a dot-named
``.partial-`` folder without the final name; those of dead processes are removed by the next
export into the same parent.

An existing folder is replaced (``overwrite``, the CLI's ``--force``) only when it is one of
our finished exports: its manifest lists every file in it. Anything else is refused.

``manifest.json``::

    {"format": "gguf", "quantize": "q8_0", "merged": true,
     "source": {"run_id": ..., "step": 4, "checkpoint": ..., "model_source": ...},
     "files": [{"path": "model.gguf", "bytes": 292053184, "sha256": "..."}],
     "verification": {"passed": true, "checks": [{"name": ..., "passed": ..., ...}]},
     "timings": {...}, "created_at": "2026-11-29T22:40:00Z", ...}
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from gemma_panel import files
from gemma_panel.errors import UserError

MANIFEST = "manifest.json"


class ExportError(UserError, RuntimeError):
    """An export that cannot be made, said in words with what to do next."""


def list_files(folder: Path) -> list[dict]:
    """Every file under ``folder`` (but the manifest) with its size and SHA-256, sorted."""
    out = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        out.append({"path": rel, "bytes": path.stat().st_size, "sha256": files.sha256_of(path)})
    return out


def write_manifest(folder: Path, record: dict) -> dict:
    """Add the file list to ``record`` and write it as ``manifest.json``; return it."""
    listed = list_files(folder)
    manifest = {
        **record,
        "files": listed,
        "total_bytes": sum(f["bytes"] for f in listed),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    files.write_json_atomic(Path(folder) / MANIFEST, manifest, default=_jsonable)
    return manifest


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_manifest(folder: str | os.PathLike) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())


def check_files(folder: str | os.PathLike) -> list[str]:
    """Problems with a finished export's files against its manifest (empty: all intact)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    problems = []
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{entry['path']}: {path.stat().st_size} bytes, "
                            f"manifest says {entry['bytes']}")
        elif files.sha256_of(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: checksum differs from the manifest")
    return problems


@contextlib.contextmanager
def staged_folder(target: Path, overwrite: bool = False):
    """Yield a fresh folder to write into; on a clean exit it becomes ``target``.

    On an exception (or KeyboardInterrupt) the staging folder is removed and ``target`` is
    as it was. An existing ``target`` is an ``ExportError`` raised before any work, unless
    ``overwrite`` and it is a finished export (``check_replaceable``); it is then replaced
    only once the new export is complete.
    """
    target = Path(target)
    check_replaceable(target, overwrite)
    try:
        with files.staged_folder(target, replace=overwrite,
                                 before_replace=lambda t: check_replaceable(t, True)) as folder:
            yield folder
    except FileExistsError as exc:
        raise ExportError(f"'{target}' appeared while the export was written; nothing was "
                          "replaced. Export again with another --out.") from exc


def check_replaceable(target: str | os.PathLike, overwrite: bool) -> None:
    """Refuse, in words, an ``--out`` that exists and may not be replaced.

    Only a finished export (a folder whose manifest lists every file in it) may be
    replaced, and only with ``overwrite``; any other file or folder is the user's.
    """
    target = Path(target)
    if not (target.exists() or target.is_symlink()):
        return
    why = _not_an_export(target)
    if why:
        raise ExportError(f"'{target}' already exists and {why}, so it is never replaced; "
                          "choose another --out.")
    if not overwrite:
        raise ExportError(f"'{target}' already exists and holds an export; pass --force to "
                          "replace it once the new one is verified, or choose another --out.")


def _not_an_export(target: Path) -> str | None:
    """Why ``target`` is not a finished export that may be replaced (None when it is)."""
    if target.is_symlink() or not target.is_dir():
        return "is not an export folder"
    listed = _listed_paths(target)
    if listed is None:
        return f"has no {MANIFEST} of an export"
    present = (p.relative_to(target).as_posix() for p in target.rglob("*")
               if p.is_file() or p.is_symlink())
    extra = sorted(rel for rel in present if rel != MANIFEST and rel not in listed)
    if extra:
        return f"holds files its export did not write ({', '.join(extra[:3])})"
    return None


def _listed_paths(folder: Path) -> set[str] | None:
    """The files our manifest in ``folder`` lists; None when there is no manifest of ours."""
    try:
        manifest = read_manifest(folder)
        if not {"format", "files", "verification"} <= set(manifest):
            return None
        return {entry["path"] for entry in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_finished(folder: str | os.PathLike) -> bool:
    """A folder that holds a finished export: its manifest exists and says it verified."""
    folder = Path(folder)
    if files.is_partial(folder.name) or not (folder / MANIFEST).is_file():
        return False
    try:
        return bool(read_manifest(folder)["verification"]["passed"])
    except (KeyError, ValueError):
        return False
