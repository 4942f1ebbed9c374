"""Files we write: atomically, through named partials, cleaned up only when their writer died.

Every file or folder is first written under a partial name beside its final one and renamed
into place when whole, so a kill at any moment leaves the old content or the new, never a
mix. A partial's name says who wrote it::

    .partial-<final name>.pid<pid>-<start time>.<8 random hex>

(``-<start time>`` is left out where the kernel does not tell it). ``remove_dead_partials``
removes only names of exactly that form whose writer is certainly gone; nothing else in the
folder is ever touched, whatever it is called.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

from gemma_panel.processes import is_running, start_time

PARTIAL_PREFIX = ".partial-"
# The random part is 8 characters; [a-z0-9_] also matches the mkdtemp names of older
# releases (".partial-<name>.pid<N>.<8 random>"), so their leftovers are swept too.
_PARTIAL_RE = re.compile(
    r"^\.partial-(?P<name>.+)\.pid(?P<pid>[1-9][0-9]*)(?:-(?P<start>[0-9]+))?"
    r"\.(?P<token>[a-z0-9_]{8})$")


def partial_name(name: str) -> str:
    """A fresh partial name for a file or folder that will be renamed to ``name``."""
    pid = os.getpid()
    started = start_time(pid)
    owner = f"pid{pid}" + (f"-{started}" if started else "")
    return f"{PARTIAL_PREFIX}{name}.{owner}.{secrets.token_hex(4)}"


def partial_writer(name: str) -> tuple[int, str | None] | None:
    """(pid, start time) of the process that wrote the partial ``name``; None when the name
    is not one our code writes."""
    match = _PARTIAL_RE.match(name)
    if match is None:
        return None
    return int(match["pid"]), match["start"]


def is_partial(name: str) -> bool:
    return partial_writer(name) is not None


def remove_dead_partials(parent: str | os.PathLike) -> list[Path]:
    """Delete the partials in ``parent`` whose writer is certainly gone; return them.

    A name not of our partial form, or a writer that is running (or cannot be checked),
    is left alone.
    """
    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for entry in sorted(parent.iterdir()):
        writer = partial_writer(entry.name)
        if writer is None or is_running(*writer) is not False:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """``open(path, mode)`` for writing, into a partial that becomes ``path`` only when the
    block ends without an exception (``mode`` "w" or "wb"; ``kwargs`` go to ``open``)."""
    path = Path(path)
    partial = path.with_name(partial_name(path.name))
    try:
        with open(partial, mode.replace("w", "x"), **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` whole or not at all (text as UTF-8); return the path."""
    with open_atomic(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data, **dumps) -> Path:
    """``write_atomic`` of ``json.dumps(data, indent=2, **dumps)`` plus a newline."""
    return write_atomic(path, json.dumps(data, **{"indent": 2, **dumps}) + "\n")


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, *, replace: bool = False,
                  before_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield an empty partial folder beside ``target``; on a clean exit it becomes ``target``.

    On an exception (KeyboardInterrupt included) the partial is removed and ``target`` is as
    it was. Dead writers' partials in the same folder are swept first.

    Args:
        replace: an existing ``target`` is replaced once the new folder is whole; without
            it an existing ``target`` is a ``FileExistsError``, before and after the work.
        before_replace: called with the existing ``target`` before work starts and again
            just before it is replaced; it raises to refuse.

    Raises:
        FileExistsError: ``target`` exists (or appeared meanwhile) and ``replace`` is False.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_existing(target, replace, before_replace)
    remove_dead_partials(target.parent)
    staging = target.with_name(partial_name(target.name))
    staging.mkdir()
    try:
        yield staging
        _check_existing(target, replace, before_replace)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_existing(target: Path, replace: bool, before_replace) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    if not replace:
        raise FileExistsError(f"'{target}' already exists")
    if before_replace is not None:
        before_replace(target)


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first (into a
    partial, so a kill in between leaves it to the dead-partial sweep) and then deleted."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(partial_name(target.name + ".old"))
        os.rename(target, old)
    try:
        os.rename(staging, target)  # atomic: the folder appears whole or not at all
    except OSError as exc:
        if old is not None:
            os.rename(old, target)
        if target.exists():
            raise FileExistsError(f"'{target}' appeared while it was being written") from exc
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def last_component(name: str) -> str:
    """The last component of a path from anywhere (``/`` or ``\\``), NFKC-normalised."""
    return unicodedata.normalize("NFKC", str(name)).replace("\\", "/").split("/")[-1]


def safe_name(name: str, default: str = "file", max_length: int = 80) -> str:
    """A file name safe to create: the last path component of ``name`` with anything but
    letters, digits, ``_`` and ``-`` turned into ``_``, no leading dot, at most
    ``max_length`` characters; ``default`` when nothing is left.

        >>> safe_name("../../My data (v2)")
        'My_data_v2'
    """
    name = last_component(name)
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("._-")[:max_length] or default


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same existing file (through links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
