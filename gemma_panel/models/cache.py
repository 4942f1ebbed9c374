"""The model cache: each GGUF imported once, keyed by its content, written atomically.

Layout under ``$GEMMA_PANEL_HOME/models``::

    gguf-<sha256[:16]>/      a Hugging Face folder KerasHub loads (config, safetensors,
                             tokenizer.model) plus import.json (source, hash, timings)
    .partial-...             an import in progress; never read, removed once its owner died
    hashes.json              path + size + mtime -> sha256, so a large GGUF is hashed once
    gemma-3-270m-q4_k_m.gguf the default model, assembled from its PyPI package

An import writes into a ``.partial-`` folder and renames it into place when every file is
written, so a kill at any moment leaves either no entry or a whole one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from gemma_panel.home import home_dir

_PARTIAL = ".partial-"


def models_dir() -> Path:
    path = home_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_json_atomic(path: Path, data) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_PARTIAL, suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def file_sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, remembered by (path, size, mtime) so it is computed once."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = models_dir() / "hashes.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key in index:
        return index[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    index[key] = digest.hexdigest()
    _write_json_atomic(index_path, index)
    return index[key]


def cached_import_dir(sha256: str) -> Path:
    """Where the import of the GGUF with this hash lives (whether or not it exists yet)."""
    return models_dir() / f"gguf-{sha256[:16]}"


def is_cached(sha256: str) -> bool:
    return (cached_import_dir(sha256) / "import.json").is_file()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_partials() -> list[Path]:
    """Delete ``.partial-`` leftovers of imports whose process is gone; return them."""
    removed = []
    for entry in models_dir().glob(_PARTIAL + "*"):
        parts = entry.name[len(_PARTIAL):].split("-")
        pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        if pid is not None and pid_alive(pid) and pid != os.getpid():
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def import_gguf(path: str | os.PathLike, sha256: str | None = None, progress: bool = True) -> Path:
    """Import a Gemma GGUF into the cache once; return the folder KerasHub loads.

    Args:
        path: the GGUF file.
        sha256: its hash when already known (the default model's package states it).
        progress: show a progress bar over the tensors on stderr.

    Raises:
        ModelSourceError: the file is missing, not a whole GGUF, or not a Gemma.
    """
    from gemma_panel.models.gguf_import import convert_gguf_to_hf, open_gguf

    path = Path(path)
    sha256 = sha256 or file_sha256(path)
    target = cached_import_dir(sha256)
    if is_cached(sha256):
        return target
    remove_dead_partials()
    reader = open_gguf(path)  # raises before anything is written
    partial = Path(
        tempfile.mkdtemp(dir=models_dir(), prefix=f"{_PARTIAL}{sha256[:16]}-{os.getpid()}-")
    )
    started = time.perf_counter()
    bar = None
    try:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(reader.tensors), desc=f"Importing {path.name}", unit="tensor")

        def advance(done, total, name):
            if bar is not None:
                bar.update(1)

        convert_gguf_to_hf(reader, partial, progress=advance)
        seconds = time.perf_counter() - started
        record = {"source": str(path.resolve()), "sha256": sha256,
                  "architecture": str(reader.fields["general.architecture"].contents()),
                  "import_seconds": round(seconds, 2), "imported_at": time.time()}
        (partial / "import.json").write_text(json.dumps(record, indent=2))
        try:
            os.rename(partial, target)  # atomic: the entry appears whole or not at all
        except OSError:
            if not is_cached(sha256):  # not another process winning the same race
                raise
            shutil.rmtree(partial, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return target


def import_record(folder: Path) -> dict:
    return json.loads((folder / "import.json").read_text())
