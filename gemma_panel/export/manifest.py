"""An export's folder: written aside, described by a manifest, moved into place whole.

Every export is built in a ``.partial-<name>-<pid>-...`` folder beside its target. The files
are written, verified by loading them back, listed with their sizes and SHA-256 in
``manifest.json`` (written last), and the folder is renamed to its final name in one
``os.rename``. So a failure or a kill at any moment leaves either nothing or a dot-named
``.partial-`` folder without the final name; those of dead processes are removed by the next
export into the same parent.

``manifest.json``::

    {"format": "gguf", "quantize": "q8_0", "merged": true,
     "source": {"run_id": ..., "step": 4, "checkpoint": ..., "model_source": ...},
     "files": [{"path": "model.gguf", "bytes": 292053184, "sha256": "..."}],
     "verification": {"passed": true, "checks": [{"name": ..., "passed": ..., ...}]},
     "timings": {...}, "created_at": "2026-11-29T22:40:00Z", ...}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from gemma_panel.errors import UserError
from gemma_panel.models.cache import pid_alive

_PARTIAL = ".partial-"
MANIFEST = "manifest.json"


class ExportError(UserError, RuntimeError):
    """An export that cannot be made, said in words with what to do next."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(folder: Path) -> list[dict]:
    """Every file under ``folder`` (but the manifest) with its size and SHA-256, sorted."""
    out = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        out.append({"path": rel, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def write_manifest(folder: Path, record: dict) -> dict:
    """Add the file list to ``record`` and write it as ``manifest.json``; return it."""
    files = list_files(folder)
    manifest = {
        **record,
        "files": files,
        "total_bytes": sum(f["bytes"] for f in files),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_jsonable) + "\n")
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
        elif file_sha256(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: checksum differs from the manifest")
    return problems


def remove_dead_partials(parent: Path) -> list[Path]:
    """Delete ``.partial-`` folders in ``parent`` whose writing process is gone."""
    removed = []
    if not Path(parent).is_dir():
        return removed
    for entry in Path(parent).glob(_PARTIAL + "*"):
        pid = _pid_of(entry.name)
        if pid is not None and (pid == os.getpid() or pid_alive(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _pid_of(name: str) -> int | None:
    """The writer's pid in ``.partial-<name>.pid<N>.<random>``."""
    for part in name.split("."):
        if part.startswith("pid") and part[3:].isdigit():
            return int(part[3:])
    return None


@contextlib.contextmanager
def staged_folder(target: Path, overwrite: bool = False):
    """Yield a fresh folder to write into; on a clean exit it becomes ``target``.

    On an exception (or KeyboardInterrupt) the staging folder is removed and nothing named
    ``target`` appears. With ``overwrite``, an existing ``target`` is replaced only after the
    new export is complete; otherwise an existing one is an ``ExportError`` raised before
    any work.
    """
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise ExportError(
            f"'{target}' already exists; pass --out with another folder, or overwrite=True "
            "(--force) to replace it."
        )
    remove_dead_partials(parent)
    prefix = f"{_PARTIAL}{target.name}.pid{os.getpid()}."
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        yield staging
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f"{_PARTIAL}old-{target.name}."
                                                           f"pid{os.getpid()}."))
            os.rename(target, old / "previous")
            os.rename(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, target)  # atomic: the export appears whole or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_finished(folder: str | os.PathLike) -> bool:
    """A folder that holds a finished export: its manifest exists and says it verified."""
    folder = Path(folder)
    if folder.name.startswith(_PARTIAL) or not (folder / MANIFEST).is_file():
        return False
    try:
        return bool(read_manifest(folder)["verification"]["passed"])
    except (KeyError, ValueError):
        return False
