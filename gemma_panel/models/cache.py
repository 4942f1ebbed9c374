"""The model cache: each GGUF imported once, keyed by its content, written atomically.

Layout under ``$GEMMA_PANEL_HOME/models``::

    gguf-<sha256[:16]>/      a Hugging Face folder KerasHub loads (config, safetensors,
                             tokenizer.model) plus import.json (source, hash, timings)
    .partial-...             an import in progress (gemma_panel.files); never read, removed
                             once its writer died
    hashes.json              path + size + mtime -> sha256, so a large GGUF is hashed once
    gemma-3-270m-q4_k_m.gguf the default model, assembled from its PyPI package

An import writes into a partial folder and renames it into place when every file is written
(``gemma_panel.files.staged_folder``), so a kill at any moment leaves either no entry or a
whole one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gemma_panel import files
from gemma_panel.home import home_dir


def models_dir() -> Path:
    path = home_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | os.PathLike, remember: bool = True) -> str:
    """The file's SHA-256, remembered by (path, size, mtime) so it is computed once
    (``remember=False``: not written down yet, see ``remember_sha256``)."""
    path = Path(path).resolve()
    index = _hash_index()
    key = _hash_key(path)
    if key in index:
        return index[key]
    digest = files.sha256_of(path)
    if remember:
        remember_sha256(path, digest)
    return digest


def remember_sha256(path: str | os.PathLike, digest: str) -> None:
    index = _hash_index()
    index[_hash_key(Path(path).resolve())] = digest
    files.write_json_atomic(models_dir() / "hashes.json", index)


def _hash_key(path: Path) -> str:
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def _hash_index() -> dict:
    try:
        return json.loads((models_dir() / "hashes.json").read_text())
    except (OSError, ValueError):
        return {}


def cached_import_dir(sha256: str) -> Path:
    """Where the import of the GGUF with this hash lives (whether or not it exists yet)."""
    return models_dir() / f"gguf-{sha256[:16]}"


def is_cached(sha256: str) -> bool:
    return (cached_import_dir(sha256) / "import.json").is_file()


def import_gguf(path: str | os.PathLike, sha256: str | None = None, progress: bool = True) -> Path:
    """Import a Gemma GGUF into the cache once; return the folder KerasHub loads.

    Args:
        path: the GGUF file.
        sha256: its hash when already known (the default model's package states it).
        progress: show a progress bar over the tensors on stderr.

    Raises:
        ModelSourceError: the file is missing, not a whole GGUF, or not a Gemma.
    """
    from gemma_panel.models.gguf_import import open_gguf

    path = Path(path)
    digest = sha256 or file_sha256(path, remember=False)  # a refused file leaves no trace
    target = cached_import_dir(digest)
    if not is_cached(digest):
        reader = open_gguf(path)  # raises before anything is written
        try:
            with files.staged_folder(target) as partial:  # sweeps dead imports first
                _convert(reader, path, digest, partial, progress)
        except FileExistsError:
            if not is_cached(digest):  # not another process winning the same race
                raise
    if sha256 is None:
        remember_sha256(path, digest)
    return target


def _convert(reader, path: Path, sha256: str, folder: Path, progress: bool) -> None:
    from gemma_panel.models.gguf_import import convert_gguf_to_hf

    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(reader.tensors), desc=f"Importing {path.name}", unit="tensor")

    def advance(done, total, name):
        if bar is not None:
            bar.update(1)

    try:
        convert_gguf_to_hf(reader, folder, progress=advance)
    finally:
        if bar is not None:
            bar.close()
    record = {"source": str(path.resolve()), "sha256": sha256,
              "architecture": str(reader.fields["general.architecture"].contents()),
              "import_seconds": round(time.perf_counter() - started, 2),
              "imported_at": time.time()}
    (folder / "import.json").write_text(json.dumps(record, indent=2))


def import_record(folder: Path) -> dict:
    return json.loads((folder / "import.json").read_text())
