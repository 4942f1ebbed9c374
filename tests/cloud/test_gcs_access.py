"""Who the client is, and the one-sentence answers to 403s, checked before a run starts.

The 403 answers come from tests/cloud/forbidden.py, a loopback server that words them the
way Cloud Storage's JSON API does (gcp-storage-emulator enforces no permissions). The client
reaches it through the libraries' own API_ENDPOINT_OVERRIDE and authenticates with a real
service-account key file whose token endpoint is that server.
"""

from __future__ import annotations

import pytest

from gemma_panel.cloud import gcs
from gemma_panel.cloud import gcs as gcs_module  # the name `gcs` is also a fixture
from gemma_panel.cloud.gcs import StorageAccessError, open_gs, preflight
from gemma_panel.errors import UserError

from .forbidden import EMAIL, ForbiddenServer, service_account_key

DATA = b'{"prompt": "1 km in m?", "response": "1000"}\n'


@pytest.fixture
def forbidden(tmp_path, monkeypatch):
    """A server granting ``granted`` on bucket 'guarded', and a client keyed as EMAIL."""
    servers = []

    def start(granted: set[str]):
        server = ForbiddenServer("guarded", {"train.jsonl": DATA}, granted)
        servers.append(server)
        key = service_account_key(tmp_path / "key.json", f"{server.url}/token")
        monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
        monkeypatch.setenv("API_ENDPOINT_OVERRIDE", server.url)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
        monkeypatch.delenv(gcs.IMPERSONATE_ENV, raising=False)
        monkeypatch.setattr(gcs, "_CLIENTS", {})
        return server, key

    yield start
    for server in servers:
        server.close()


def test_identity_names_the_key_files_service_account(forbidden):
    _, key = forbidden(set())
    assert gcs.identity() == f"service account {EMAIL} (key file {key})"


def test_identity_under_impersonation(forbidden, monkeypatch):
    _, key = forbidden(set())
    monkeypatch.setenv(gcs.IMPERSONATE_ENV, "trainer@test-project.iam.gserviceaccount.com")
    assert gcs.identity() == ("trainer@test-project.iam.gserviceaccount.com (impersonated by "
                              f"service account {EMAIL} (key file {key}))")


def test_read_403_names_bucket_identity_and_permission(forbidden):
    server, _ = forbidden(set())
    with pytest.raises(StorageAccessError) as caught:
        open_gs("gs://guarded/train.jsonl")
    assert str(caught.value).startswith(
        f"service account {EMAIL} (key file ")
    assert ("may not read gs://guarded/train.jsonl in bucket guarded: it lacks "
            "storage.objects.get;") in str(caught.value)
    assert ("POST", "/token") in server.calls  # the real key-file flow ran


def test_preflight_refuses_a_read_only_identity_before_the_run(forbidden):
    server, _ = forbidden({"storage.objects.get"})
    assert open_gs("gs://guarded/train.jsonl").open("rb").read() == DATA
    with pytest.raises(StorageAccessError) as caught:
        preflight(["gs://guarded/train.jsonl", "/local/file.jsonl"],
                  writes=["gs://guarded/runs"])
    assert f"{EMAIL} (key file" in str(caught.value)
    assert "may not write gs://guarded/runs in bucket guarded: it lacks " \
           "storage.objects.create" in str(caught.value)
    assert not any(method == "POST" and path.startswith("/upload")
                   for method, path in server.calls)  # nothing was written to find out


def test_preflight_passes_with_both_permissions(forbidden):
    forbidden({"storage.objects.get", "storage.objects.create"})
    who = preflight(["gs://guarded/train.jsonl"], writes=["gs://guarded/runs"])
    assert who.startswith(f"service account {EMAIL}")


def test_preflight_on_the_emulator_finds_a_missing_bucket(gcs):
    _, bucket = gcs
    bucket.blob("t.jsonl").upload_from_string(DATA)
    assert preflight([f"gs://{bucket.name}/t.jsonl"], writes=[f"gs://{bucket.name}/runs"])
    with pytest.raises(StorageAccessError, match="the bucket gone-bucket does not exist"):
        preflight([], writes=["gs://gone-bucket/runs"])


def test_a_run_on_unreadable_gcs_data_is_never_queued(gcs, tmp_path):
    from gemma_panel.config import load_recipe
    from gemma_panel.runs import RunStore

    _, bucket = gcs
    store = RunStore(tmp_path / "home")
    try:
        with pytest.raises(StorageAccessError, match="the bucket gone-bucket does not exist"):
            store.create_run(load_recipe(None, ["data.train_path=gs://gone-bucket/t.jsonl"]))
        with pytest.raises(StorageAccessError, match=f"no such object in bucket {bucket.name}"):
            store.create_run(load_recipe(None, [
                f"data.train_path=gs://{bucket.name}/missing.jsonl"]))
        assert store.list_runs() == []
        bucket.blob("t.jsonl").upload_from_string(DATA)
        run = store.create_run(load_recipe(None, [f"data.train_path=gs://{bucket.name}/t.jsonl"]))
        assert run.status == "queued"
    finally:
        store.close()


def test_signed_download_urls_verify_with_the_service_accounts_key(forbidden):
    import hashlib
    import json
    from pathlib import Path
    from urllib.parse import parse_qs, urlparse

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    _, key = forbidden(set())
    link = urlparse(gcs.signed_url("gs://guarded/exports/model.gguf", minutes=10))
    query = parse_qs(link.query)
    assert link.path == "/guarded/exports/model.gguf"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == ["600"]
    credential = query["X-Goog-Credential"][0]
    assert credential.startswith(f"{EMAIL}/")
    # Rebuild the V4 string-to-sign and check the signature with the key's public half.
    unsigned = "&".join(p for p in link.query.split("&")
                        if not p.startswith("X-Goog-Signature="))
    canonical = "\n".join(["GET", link.path, unsigned, f"host:{link.netloc}", "", "host",
                           "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["GOOG4-RSA-SHA256", query["X-Goog-Date"][0],
                         credential.removeprefix(f"{EMAIL}/"),
                         hashlib.sha256(canonical.encode()).hexdigest()])
    private = serialization.load_pem_private_key(
        json.loads(Path(key).read_text())["private_key"].encode(), password=None)
    private.public_key().verify(bytes.fromhex(query["X-Goog-Signature"][0]),
                                to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_signing_without_a_service_account_says_what_to_do(gcs):
    _, bucket = gcs
    with pytest.raises(UserError, match="cannot sign a download link .* needs a service "
                                        "account"):
        gcs_module.signed_url(f"gs://{bucket.name}/x.gguf")


def test_resume_notices_that_gcs_data_changed(gcs, tmp_path):
    from gemma_panel.config import load_recipe
    from gemma_panel.runs import RunStore
    from gemma_panel.runs.data_changes import (
        current_fingerprint,
        data_changes,
        trained_fingerprint,
    )

    _, bucket = gcs
    bucket.blob("t.jsonl").upload_from_string(DATA)
    store = RunStore(tmp_path / "home")
    try:
        run = store.create_run(load_recipe(None, [f"data.train_path=gs://{bucket.name}/t.jsonl"]))
        before = trained_fingerprint(store, run.id)
        assert before["train_path"]["bytes"] == len(DATA) and before["train_path"]["md5"]
        assert data_changes(before, current_fingerprint(store.folder(run.id))) == []
        bucket.blob("t.jsonl").upload_from_string(DATA + DATA)
        changed = (f"gs://{bucket.name}/t.jsonl changed ({len(DATA):,} bytes then, "
                   f"{2 * len(DATA):,} now)")
        assert data_changes(before, current_fingerprint(store.folder(run.id))) == [changed]
    finally:
        store.close()


TRAINER = "trainer@test-project.iam.gserviceaccount.com"


@pytest.fixture
def impersonating(forbidden, monkeypatch):
    """The key file's account impersonating TRAINER, IAM's signBlob on the loopback server."""
    from google.auth import iam

    def start(granted: set[str]):
        server, key = forbidden(granted)
        monkeypatch.setenv(gcs.IMPERSONATE_ENV, TRAINER)
        monkeypatch.setattr(iam, "_IAM_SIGN_ENDPOINT",
                            f"{server.url}/v1/projects/-/serviceAccounts/{{}}:signBlob")
        return server, key

    return start


def test_impersonation_without_sign_blob_is_one_sentence(impersonating, tmp_path):
    from gemma_panel.ui.downloads import export_links

    server, key = impersonating(set())
    with pytest.raises(UserError) as caught:
        gcs.signed_url("gs://guarded/exports/model.gguf")
    said = str(caught.value)
    assert ("POST", f"/v1/projects/-/serviceAccounts/{TRAINER}:signBlob") in server.calls
    assert said == (
        f"service account {EMAIL} (key file {key}) may not sign as {TRAINER} (needed for "
        "the download link of gs://guarded/exports/model.gguf): it lacks "
        f"iam.serviceAccounts.signBlob on {TRAINER}; grant it with 'gcloud iam "
        f"service-accounts add-iam-policy-binding {TRAINER} --member=serviceAccount:{EMAIL} "
        "--role=roles/iam.serviceAccountTokenCreator', or use the service account's key "
        "file (GOOGLE_APPLICATION_CREDENTIALS) instead of impersonating it.")
    # The Export tab shows the sentence where the link would be.
    folder = tmp_path / "runs" / "r1" / "exports" / "e"
    folder.mkdir(parents=True)
    (label, url), _ = export_links(tmp_path / "runs", folder, {"files": [{"path": "model.gguf"}]},
                                   "gs://guarded/exports")
    assert url == "" and label == f"the files are in gs://guarded/exports; {said}"


def test_impersonation_with_sign_blob_signs_through_iam(impersonating):
    server, _ = impersonating({"iam.serviceAccounts.signBlob"})
    link = gcs.signed_url("gs://guarded/exports/model.gguf")
    assert f"X-Goog-Credential={TRAINER}" in link.replace("%40", "@")
    assert ("POST", f"/v1/projects/-/serviceAccounts/{TRAINER}:signBlob") in server.calls
