"""Copies between this machine and Cloud Storage, verified by checksum.

- Uploads are create-only (``if_generation_match=0``): a write never replaces an object
  another run wrote; large files go up in resumable chunks.
- Every upload is compared with the object's CRC32C and MD5 as the server stored them.
- Downloads land in a local cache keyed by the object's content hash, so a model or dataset
  already fetched is not fetched again, and a changed object is fetched afresh.

Example:
    >>> upload_folder("runs/r1/exports/hf", "gs://my-bucket/exports/r1/hf")
    >>> local = download_cached("gs://my-bucket/models/gemma3.gguf")
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.cloud.gcs import (
    GsUrl,
    StorageAccessError,
    default_client,
    explained,
    identity,
    parse_gs_url,
)
from gemma_panel.errors import UserError
from gemma_panel.files import is_partial, partial_name, staged_folder

# The storage library sends files over 8 MiB as resumable uploads, in chunks of this size
# (a multiple of 256 KiB, as the API wants): an interrupted chunk is sent again, not the file.
RESUMABLE_CHUNK = 8 << 20
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class Uploaded:
    """One verified upload: where it went, its size and checksums (base64, as GCS gives)."""

    url: str
    size: int
    crc32c: str
    md5: str
    generation: int


def checksums(path: str | os.PathLike) -> tuple[str, str]:
    """(CRC32C, MD5) of a local file, base64-encoded the way Cloud Storage reports them."""
    import google_crc32c

    crc, md5 = google_crc32c.Checksum(), hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            crc.update(block)
            md5.update(block)
    return (base64.b64encode(crc.digest()).decode(), base64.b64encode(md5.digest()).decode())


def upload_file(local: str | os.PathLike, url: str | GsUrl, *, client=None,
                chunk_size: int | None = None) -> Uploaded:
    """Create ``url`` from ``local``, refusing to replace an existing object, and verify it.

    Args:
        chunk_size: the resumable-upload chunk size (a multiple of 256 KiB; default
            `RESUMABLE_CHUNK`), for files the library sends resumable (over 8 MiB).
    """
    url = parse_gs_url(url) if isinstance(url, str) else url
    client = client or default_client()
    blob = client.bucket(url.bucket).blob(url.name, chunk_size=chunk_size or RESUMABLE_CHUNK)
    with explained(url, "write", client):
        blob.upload_from_filename(os.fspath(local), if_generation_match=0, checksum="crc32c")
    return verify_upload(local, url, blob)


def verify_upload(local: str | os.PathLike, url: GsUrl, blob) -> Uploaded:
    """Compare the object the server stored (its metadata from the upload's answer) with
    the local file; a `UserError` when they differ."""
    crc32c, md5 = checksums(local)
    stored = (blob.crc32c, blob.md5_hash)
    if stored[0] != crc32c or (stored[1] is not None and stored[1] != md5):
        raise UserError(
            f"{url} does not match {local} after upload (CRC32C {stored[0]} / MD5 {stored[1]} "
            f"stored, {crc32c} / {md5} here): the copy was corrupted on the way; delete the "
            f"object ('gcloud storage rm {url}') and upload again.")
    return Uploaded(str(url), int(blob.size or os.path.getsize(local)), crc32c, md5,
                    int(blob.generation or 0))


# The files whose presence says a folder is whole: a checkpoint's and an export's.
COMPLETION_MARKERS = ("meta.json", "manifest.json")


def upload_folder(local: str | os.PathLike, url: str | GsUrl, *, client=None,
                  chunk_size: int | None = None,
                  last: tuple[str, ...] = COMPLETION_MARKERS) -> list[Uploaded]:
    """Upload a finished folder (an export, a checkpoint) below ``url``, every file
    create-only and verified; refuse a destination that already holds objects.

    Args:
        last: file names uploaded after every other file (by default a checkpoint's
            ``meta.json`` and an export's ``manifest.json``: a reader that finds the
            marker finds the whole folder).
    """
    root = Path(local)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; pass the export or checkpoint folder.")
    url = parse_gs_url(url) if isinstance(url, str) else url
    client = client or default_client()
    prefix = GsUrl(url.bucket, url.name.rstrip("/") + "/" if url.name else "")
    with explained(prefix, "list", client):
        taken = next(iter(client.list_blobs(url.bucket, prefix=prefix.name, max_results=1)),
                     None)
    if taken is not None:
        raise StorageAccessError(
            f"{prefix} already holds objects (gs://{url.bucket}/{taken.name}): uploads never "
            "overwrite; choose another destination.")
    files = sorted((p for p in root.rglob("*") if p.is_file() and not is_partial(p.name)),
                   key=lambda p: (p.name in last, p))
    if not files:
        raise UserError(f"{root}: the folder is empty; nothing to upload.")
    return [upload_file(p, prefix.child(p.relative_to(root).as_posix()), client=client,
                        chunk_size=chunk_size) for p in files]


def cache_dir() -> Path:
    from gemma_panel.home import home_dir

    return home_dir() / "cache" / "gcs"


def download_cached(url: str | GsUrl, *, client=None, cache: str | os.PathLike | None = None
                    ) -> Path:
    """A local copy of ``url`` under the cache, keyed by the object's MD5 (CRC32C for
    composite objects, which have none); fetched only when not there yet, and verified."""
    url = parse_gs_url(url) if isinstance(url, str) else url
    client = client or default_client()
    blob = client.bucket(url.bucket).blob(url.name)
    with explained(url, "read", client):
        blob.reload()
    digest = blob.md5_hash or blob.crc32c
    key = base64.b64decode(digest).hex()
    target = Path(cache or cache_dir()) / key / (Path(url.name).name or "object")
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(partial_name(target.name))
    try:
        download_verified(blob, url, partial, client)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def download_folder(url: str | GsUrl, local: str | os.PathLike, *, client=None) -> Path:
    """Every object below ``url`` into the new folder ``local`` (which appears whole or not
    at all), each verified: a checkpoint or model folder held on Cloud Storage."""
    url = parse_gs_url(url) if isinstance(url, str) else url
    client = client or default_client()
    prefix = GsUrl(url.bucket, url.name.rstrip("/") + "/" if url.name else "")
    target = Path(local)
    if target.exists():
        raise UserError(f"{target} already exists; choose a new folder to download into.")
    with explained(prefix, "list", client):
        blobs = [b for b in client.list_blobs(url.bucket, prefix=prefix.name)
                 if not b.name.endswith("/")]
    if not blobs:
        raise StorageAccessError(f"{prefix}: no objects there (as listed by "
                                 f"{identity(client)}); check the path.")
    with staged_folder(target) as staging:
        for blob in blobs:
            dest = staging / blob.name[len(prefix.name):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            download_verified(blob, GsUrl(url.bucket, blob.name), dest, client)
    return target


def download_verified(blob, url: GsUrl, dest: Path, client) -> None:
    """Download ``blob`` (of ``url``) to ``dest`` and compare its CRC32C and MD5."""
    with explained(url, "read", client):
        # The library checks the whole download's hash against the server's too.
        blob.download_to_filename(os.fspath(dest), checksum="auto",
                                  if_generation_match=blob.generation)
    crc32c, md5 = checksums(dest)
    if crc32c != blob.crc32c or (blob.md5_hash and md5 != blob.md5_hash):
        raise UserError(f"{url}: the downloaded copy does not match the object's "
                        "checksums; try again.")


def download_folder_cached(url: str | GsUrl, *, client=None,
                           cache: str | os.PathLike | None = None) -> Path:
    """A local copy of the folder below ``url`` under the cache, keyed by the names and
    hashes of its objects: fetched once, fetched afresh when any object changes."""
    url = parse_gs_url(url) if isinstance(url, str) else url
    client = client or default_client()
    prefix = url.name.rstrip("/") + "/" if url.name else ""
    with explained(url, "list", client):
        listing = sorted(f"{b.name[len(prefix):]} {b.md5_hash or b.crc32c}"
                         for b in client.list_blobs(url.bucket, prefix=prefix))
    key = hashlib.sha256("\n".join(listing).encode()).hexdigest()[:32]
    target = Path(cache or cache_dir()) / "folders" / key / (Path(url.name).name or url.bucket)
    if target.is_dir():
        return target
    return download_folder(url, target, client=client)


def fetch(url: str, *, client=None) -> Path:
    """A cached local copy of ``url``: the object when one has that name, else the folder
    below it (a GGUF file, a Hugging Face folder)."""
    parsed = parse_gs_url(url)
    client = client or default_client()
    if parsed.name and not parsed.name.endswith("/"):
        with explained(parsed, "read", client):
            blob = client.bucket(parsed.bucket).get_blob(parsed.name)
        if blob is not None:
            return download_cached(parsed, client=client)
    return download_folder_cached(parsed, client=client)
