"""Downloads from the run store: a file as itself, a folder as a zip streamed as it is made.

``gemma-panel dashboard`` serves ``/download/<path>`` (a Tornado handler in Panel's
``extra_patterns``) beside ``/studio``. ``<path>`` is relative to the run store's ``runs/``
folder and is resolved (``..`` and symlinks followed) before anything is read: a path that
lands outside it is refused with 403, so an export's files are downloadable and nothing
else on the server is. The same login as the page applies: when the dashboard asks for a
password, or the peer is another machine, the request must carry the signed login cookie.

A folder goes out as a ZIP written chunk by chunk (``iter_zip``): the archive is never held
in memory or on disk, whatever the size of the export. Members are stored (not deflated):
weights hardly compress, and the bytes inside equal the files the manifest checksums.

An export of a Vertex AI run has its files on Cloud Storage (its local folder holds the
manifest and README that ``runs.mirror`` brought back): ``export_links`` gives V4 signed
URLs for those, so the bytes go from Cloud Storage to the browser, not through here. Its
zip is made here as a local folder's is, the files read from Cloud Storage in ranges as
they are written (``export_members``): nothing is held whole, and no signing is needed.

Example:
    >>> b"".join(iter_zip(Path("runs/r1/exports/hf-step000004")))[:2]   # doctest: +SKIP
    b'PK'
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gemma_panel.errors import UserError

ROUTE = "download"
CHUNK = 1 << 20  # bytes read and sent at a time


class DownloadRefused(UserError, ValueError):
    """A download path outside the run store, or one that does not exist."""


def download_url(runs_root: Path, path: Path) -> str:
    """The page-relative URL that downloads ``path`` (a file or folder in the run store)."""
    rel = Path(path).resolve().relative_to(Path(runs_root).resolve()).as_posix()
    return f"/{ROUTE}/{quote(rel)}"


SIGNED_MINUTES = 60  # how long a signed link to an export on Cloud Storage works


def export_links(runs_root: Path, folder: Path, manifest: dict,
                 remote: str | None = None) -> list[tuple[str, str]]:
    """(label, url) for each file of the export in ``folder`` and for its zip.

    Files here are served by this dashboard. An export whose files are on Cloud Storage
    (``remote``: a Vertex AI run's, whose folder holds only the manifest and README) gets
    V4 signed URLs instead, which the browser fetches from Cloud Storage itself; when this
    identity cannot sign, the one entry says why, with an empty url.
    """
    names = [f["path"] for f in manifest.get("files", [])]
    here = [n for n in names if (folder / n).is_file()]
    if remote is None or len(here) == len(names):
        links = [(n, download_url(runs_root, folder / n)) for n in names]
        return links + [(f"{folder.name}.zip (the whole folder)",
                         download_url(runs_root, folder))]
    from gemma_panel.cloud.gcs import signed_url

    label = f"{folder.name}.zip (the whole folder, read from Cloud Storage by this dashboard)"
    whole = (label, download_url(runs_root, folder))
    try:
        return [(f"{n} (from Cloud Storage, link valid {SIGNED_MINUTES} min)",
                 signed_url(f"{remote.rstrip('/')}/{n}", SIGNED_MINUTES))
                for n in names] + [whole]
    except UserError as exc:
        return [(f"the files are in {remote}; {exc}", ""), whole]


def confine_download(runs_root: Path, rel: str) -> Path:
    """``rel`` resolved inside ``runs_root``; refused when it lands outside or is missing."""
    root = Path(runs_root).resolve()
    target = (root / rel).resolve()
    if not target.is_relative_to(root) or target == root:
        raise DownloadRefused(f"{rel}: only files inside the run store ({root}) can be "
                              "downloaded.")
    if not target.exists():
        raise DownloadRefused(f"{rel}: no such file in the run store; refresh the page.")
    return target


class _Sink:
    """A write-only stream zipfile writes into; ``take()`` hands over what it has so far."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


@dataclass(frozen=True)
class Member:
    """One file of a zip: its name inside, size, time, and how to open it for reading."""

    name: str
    size: int
    mtime: float
    open: Callable[[], object]


def local_members(folder: Path) -> list[Member]:
    folder = Path(folder)
    return [Member(p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime,
                   lambda p=p: p.open("rb"))
            for p in sorted(p for p in folder.rglob("*") if p.is_file())]


def export_members(folder: Path, remote: str, client=None) -> list[Member]:
    """The export's files: those in ``folder`` (the manifest, the README), and the
    manifest's others from ``remote`` on Cloud Storage, opened for ranged reads
    (``gcs.open_gs``: each is checked readable now, before any byte is sent)."""
    from gemma_panel.cloud.gcs import open_gs
    from gemma_panel.export.manifest import read_manifest

    here = local_members(folder)
    names = {m.name for m in here}
    there = []
    for entry in read_manifest(folder)["files"]:
        if entry["path"] in names:
            continue
        found = open_gs(f"{remote.rstrip('/')}/{entry['path']}", client)
        updated = found.blob.updated
        there.append(Member(entry["path"], found.stat().st_size,
                            updated.timestamp() if updated else time.time(),
                            lambda f=found: f.open("rb")))
    return sorted(here + there, key=lambda m: m.name)


def iter_zip(folder: Path | Iterable[Member], chunk: int = CHUNK) -> Iterator[bytes]:
    """The bytes of a ZIP of ``folder`` (paths relative to it) or of these members, about
    ``chunk`` at a time."""
    members = local_members(folder) if isinstance(folder, str | os.PathLike) else folder
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for member in members:
            info = zipfile.ZipInfo(member.name, time.localtime(member.mtime)[:6])
            info.file_size = member.size  # large members get ZIP64 headers, as from_file
            info.external_attr = 0o644 << 16  # a plain file, readable by all
            with member.open() as src, archive.open(info, "w") as dst:
                while block := src.read(chunk):
                    dst.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()  # the central directory


def remote_export_of(runs_root: Path, folder: Path) -> str | None:
    """Where the files of ``runs_root/RUN/exports/NAME`` are on Cloud Storage, when its
    manifest lists files that are not here (a Vertex AI run's export); else None."""
    from gemma_panel.export.manifest import MANIFEST, read_manifest

    root = Path(runs_root).resolve()
    parts = Path(folder).resolve().relative_to(root).parts
    if len(parts) != 3 or parts[1] != "exports" or not (folder / MANIFEST).is_file():
        return None
    if all((folder / f["path"]).is_file() for f in read_manifest(folder)["files"]):
        return None
    from gemma_panel.runs import RunNotFound, RunStore
    from gemma_panel.runs.mirror import remote_export

    try:
        return remote_export(RunStore(root.parent).get(parts[0]), parts[2])
    except RunNotFound:
        return None


def folder_zip(runs_root: Path, folder: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    """What ``/download/<folder>`` sends: the folder's zip, with an export's files from
    Cloud Storage where they are there (checked readable before the first byte)."""
    remote = remote_export_of(runs_root, folder)
    return iter_zip(folder if remote is None else export_members(folder, remote), chunk)


def iter_file(path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    with Path(path).open("rb") as src:
        while block := src.read(chunk):
            yield block


_END = object()  # the end of a download's parts


def download_handler():
    """The Tornado handler class (imported here so the core never needs Tornado)."""
    from tornado.ioloop import IOLoop
    from tornado.iostream import StreamClosedError
    from tornado.web import HTTPError, RequestHandler

    from .serve import is_loopback

    class DownloadHandler(RequestHandler):
        def initialize(self, runs_root: str, login: bool):
            self.runs_root, self.login = Path(runs_root), login

        def _logged_in(self) -> bool:
            """The signed login cookie of Panel's basic auth (a client cannot forge one)."""
            from panel.config import config
            from tornado.web import decode_signed_value

            cookie, secret = self.get_cookie("user"), config.cookie_secret
            return bool(cookie and secret and decode_signed_value(secret, "user", cookie))

        async def get(self, rel: str):
            peer = self.request.remote_ip or ""
            if (self.login or not is_loopback(peer)) and not self._logged_in():
                raise HTTPError(403, "log in to the dashboard first")
            try:
                target = confine_download(self.runs_root, rel)
            except DownloadRefused as exc:
                raise HTTPError(403 if "only files" in str(exc) else 404, str(exc)) from exc
            name = target.name + ("" if target.is_file() else ".zip")
            self.set_header("Content-Type", "application/octet-stream" if target.is_file()
                            else "application/zip")
            self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(name)}")
            if target.is_file():
                self.set_header("Content-Length", str(os.path.getsize(target)))
            loop = IOLoop.current()  # reads (Cloud Storage ones too) off the event loop
            try:
                parts = (iter_file(target) if target.is_file() else
                         await loop.run_in_executor(None, folder_zip, self.runs_root, target))
            except UserError as exc:  # an export on Cloud Storage this identity cannot read
                raise HTTPError(403, str(exc)) from exc
            try:
                while (part := await loop.run_in_executor(None, next, parts, _END)) is not _END:
                    if part:
                        self.write(part)
                        await self.flush()  # at most one chunk waits in memory
            except StreamClosedError:  # the browser went away
                parts.close()

    return DownloadHandler


def download_patterns(runs_root: Path, login: bool) -> list[tuple]:
    """Panel ``extra_patterns`` entry for ``/download/<path>``."""
    return [(rf"/{ROUTE}/(.+)", download_handler(),
             {"runs_root": str(runs_root), "login": login})]
