"""Uploads (create-only, resumable, verified) and cached downloads, on gcp-storage-emulator.

The emulator ignores generation preconditions (a second create-only upload succeeds there),
so refusing to overwrite another run's object is tested against a client double that
answers 412 as Cloud Storage does (`PreconditionClient`).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from gemma_panel.cloud import transfer
from gemma_panel.cloud.gcs import StorageAccessError
from gemma_panel.cloud.transfer import download_cached, upload_file, upload_folder
from gemma_panel.errors import UserError


def _export_folder(root):
    """A small stand-in for a finished export: nested files, one binary."""
    (root / "assets").mkdir(parents=True)
    (root / "config.json").write_text('{"rank": 8}\n')
    (root / "assets" / "tokenizer.model").write_bytes(os.urandom(300_000))
    (root / "model.weights.h5").write_bytes(os.urandom(1_100_000))
    return root


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_upload_folder_lands_with_matching_checksums(gcs, tmp_path):
    client, bucket = gcs
    folder = _export_folder(tmp_path / "hf")
    done = upload_folder(folder, f"gs://{bucket.name}/exports/run-1/hf", client=client)
    names = sorted(b.name for b in client.list_blobs(bucket.name))
    assert names == ["exports/run-1/hf/assets/tokenizer.model",
                     "exports/run-1/hf/config.json", "exports/run-1/hf/model.weights.h5"]
    for name in names:
        blob = bucket.get_blob(name)
        local = folder / name.removeprefix("exports/run-1/hf/")
        assert blob.md5_hash == _md5(local.read_bytes())
        assert blob.download_as_bytes() == local.read_bytes()
    assert sorted(u.url for u in done) == [f"gs://{bucket.name}/{n}" for n in names]


def test_a_checkpoint_meta_file_goes_up_after_every_other_file(gcs, tmp_path):
    client, bucket = gcs
    folder = tmp_path / "step-000002"
    folder.mkdir()
    for name in ("meta.json", "state.npz", "z.bin"):
        (folder / name).write_bytes(name.encode())
    done = upload_folder(folder, f"gs://{bucket.name}/ck/step-000002", client=client,
                         last=("meta.json",))
    assert [u.url.rsplit("/", 1)[-1] for u in done] == ["state.npz", "z.bin", "meta.json"]


def test_upload_folder_refuses_a_destination_that_holds_objects(gcs, tmp_path):
    client, bucket = gcs
    bucket.blob("exports/r/hf/config.json").upload_from_string(b"another run's")
    with pytest.raises(StorageAccessError, match="already holds objects"):
        upload_folder(_export_folder(tmp_path / "hf"), f"gs://{bucket.name}/exports/r/hf",
                      client=client)
    assert bucket.get_blob("exports/r/hf/config.json").download_as_bytes() == b"another run's"


def test_large_files_go_up_resumable_in_chunks(gcs, tmp_path, monkeypatch):
    from google.cloud.storage import Blob
    from google.cloud.storage import blob as blob_module

    client, bucket = gcs
    calls = []
    real = Blob._do_resumable_upload

    def spy(self, *args, **kwargs):
        calls.append(self.chunk_size)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Blob, "_do_resumable_upload", spy)
    # The library sends files over 8 MiB resumable; lowered here to keep the test small.
    monkeypatch.setattr(blob_module, "_MAX_MULTIPART_SIZE", 512 * 1024)
    monkeypatch.setattr(transfer, "RESUMABLE_CHUNK", 256 * 1024)
    big = tmp_path / "ckpt.bin"
    big.write_bytes(os.urandom(900_000))
    done = upload_file(big, f"gs://{bucket.name}/ckpt.bin", client=client)
    assert calls == [256 * 1024]
    assert done.md5 == _md5(big.read_bytes()) == bucket.get_blob("ckpt.bin").md5_hash


def test_download_is_cached_by_content_hash(gcs, tmp_path, monkeypatch):
    from google.cloud.storage import Blob

    client, bucket = gcs
    bucket.blob("models/m.gguf").upload_from_string(b"weights v1")
    fetches = []
    real = Blob.download_to_filename
    monkeypatch.setattr(Blob, "download_to_filename",
                        lambda self, *a, **k: fetches.append(1) or real(self, *a, **k))
    url = f"gs://{bucket.name}/models/m.gguf"
    first = download_cached(url, client=client, cache=tmp_path)
    again = download_cached(url, client=client, cache=tmp_path)
    assert first == again and first.read_bytes() == b"weights v1" and len(fetches) == 1
    assert first.parent.name == hashlib.md5(b"weights v1").hexdigest()
    bucket.blob("models/m.gguf").upload_from_string(b"weights v2")
    changed = download_cached(url, client=client, cache=tmp_path)
    assert changed.read_bytes() == b"weights v2" and len(fetches) == 2
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".partial-")]


# ------------------------------------------------------------------ a client double

class _Blob:
    def __init__(self, store, name, chunk_size=None):
        self.store, self.name, self.chunk_size = store, name, chunk_size
        self.crc32c = self.md5_hash = None
        self.size = self.generation = None
        self.kwargs = {}

    def upload_from_filename(self, filename, **kwargs):
        from google.api_core.exceptions import PreconditionFailed

        self.kwargs = kwargs
        if kwargs.get("if_generation_match") == 0 and self.name in self.store.objects:
            raise PreconditionFailed("POST .../o?ifGenerationMatch=0: At least one of the "
                                     "pre-conditions you specified did not hold.")
        data = Path(filename).read_bytes()
        self.store.objects[self.name] = data
        self.crc32c, self.md5_hash = transfer.checksums(filename)
        if self.store.corrupt:
            self.md5_hash = _md5(data + b"!")
        self.size, self.generation = len(data), 7


class PreconditionClient:
    """Honours ifGenerationMatch=0 as Cloud Storage does; ``corrupt`` makes the stored MD5
    differ from what was sent. ``objects`` appear between listing and upload via ``race``."""

    def __init__(self, race=None, corrupt=False):
        self.objects, self.race, self.corrupt, self.blobs = {}, race or {}, corrupt, []

    def list_blobs(self, bucket, prefix="", max_results=None):
        listed = [n for n in self.objects if n.startswith(prefix)]
        self.objects.update(self.race)  # another run writes just after we looked
        return iter(listed)

    def bucket(self, name):
        client = self

        class Bucket:
            def blob(self, blob_name, chunk_size=None):
                client.blobs.append(_Blob(client, blob_name, chunk_size))
                return client.blobs[-1]

            def exists(self):
                return True

        return Bucket()


def test_create_only_uploads_send_the_precondition_and_never_overwrite(tmp_path):
    folder = _export_folder(tmp_path / "hf")
    client = PreconditionClient(race={"exports/hf/config.json": b"the other run's"})
    with pytest.raises(StorageAccessError) as caught:
        upload_folder(folder, "gs://b-1/exports/hf", client=client)
    assert str(caught.value).startswith("gs://b-1/exports/hf/config.json already exists")
    assert client.objects["exports/hf/config.json"] == b"the other run's"
    assert all(b.kwargs.get("if_generation_match") == 0 for b in client.blobs if b.kwargs)


def test_a_corrupted_upload_is_reported(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"data")
    with pytest.raises(UserError, match="does not match .* after upload"):
        upload_file(tmp_path / "f.bin", "gs://b-1/f.bin", client=PreconditionClient(
            corrupt=True))


def test_cli_upload_and_whoami(gcs, tmp_path, capsys):
    from gemma_panel.cli import main

    _, bucket = gcs
    folder = _export_folder(tmp_path / "hf")
    assert main(["cloud", "upload", str(folder), f"gs://{bucket.name}/e/hf"]) == 0
    assert "3 files (1400012 bytes) uploaded" in capsys.readouterr().out
    assert main(["cloud", "upload", str(folder), f"gs://{bucket.name}/e/hf"]) == 2
    assert "already holds objects" in capsys.readouterr().err
    assert main(["cloud", "whoami"]) == 0
    assert capsys.readouterr().out.startswith("anonymous (the storage emulator at http://")


def test_model_sources_on_gcs_are_fetched_once_into_the_cache(gcs, tmp_path, monkeypatch):
    from google.cloud.storage import Blob

    from gemma_panel.models import resolve_source
    from tests.models.tiny_gguf import write_tiny_gemma_gguf
    from tests.training.conftest import TINY

    _, bucket = gcs
    gguf = write_tiny_gemma_gguf(tmp_path / "tiny.gguf", "gemma3", **TINY)
    bucket.blob("models/tiny.gguf").upload_from_filename(str(gguf))
    fetches = []
    real = Blob.download_to_filename
    monkeypatch.setattr(Blob, "download_to_filename",
                        lambda self, *a, **k: fetches.append(self.name) or real(self, *a, **k))
    resolved = resolve_source(f"gs://{bucket.name}/models/tiny.gguf")
    assert resolved.kind == "gguf"
    assert Path(resolved.location).read_bytes() == Path(gguf).read_bytes()
    assert resolve_source(f"gs://{bucket.name}/models/tiny.gguf") == resolved
    assert fetches == ["models/tiny.gguf"]


def test_folders_are_cached_by_their_objects_hashes(gcs, tmp_path):
    from gemma_panel.cloud.transfer import download_folder_cached, fetch

    client, bucket = gcs
    upload_folder(_export_folder(tmp_path / "hf"), f"gs://{bucket.name}/m/hf", client=client)
    first = fetch(f"gs://{bucket.name}/m/hf")
    assert (first / "config.json").read_text() == '{"rank": 8}\n'
    assert download_folder_cached(f"gs://{bucket.name}/m/hf/") == first
    bucket.blob("m/hf/config.json").upload_from_string(b'{"rank": 16}\n')
    changed = fetch(f"gs://{bucket.name}/m/hf")
    assert changed != first and (changed / "config.json").read_text() == '{"rank": 16}\n'


def test_by_default_an_export_manifest_goes_up_last(gcs, tmp_path):
    client, bucket = gcs
    folder = tmp_path / "gguf"
    folder.mkdir()
    for name in ("manifest.json", "model.gguf", "z-notes.txt"):
        (folder / name).write_bytes(name.encode())
    done = upload_folder(folder, f"gs://{bucket.name}/ex/gguf", client=client)
    assert [u.url.rsplit("/", 1)[-1] for u in done][-1] == "manifest.json"
