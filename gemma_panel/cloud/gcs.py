"""``gs://`` paths on Google Cloud Storage: the client, its identity, reads, access checks.

The client is made the way Google's libraries make it: Application Default Credentials
(``gcloud auth application-default login``, a VM's service account), a service-account key
file named by ``GOOGLE_APPLICATION_CREDENTIALS``, or impersonation of a service account
(``GEMMA_PANEL_IMPERSONATE_SERVICE_ACCOUNT``, or ``impersonate=``). With
``STORAGE_EMULATOR_HOST`` set (``http://127.0.0.1:PORT``), it talks to that emulator
anonymously instead.

Access problems are one sentence naming the bucket, the identity and the missing permission
(`StorageAccessError`); `preflight` checks a run's paths before it starts.

Example:
    >>> with open_gs("gs://my-bucket/data/train.jsonl").open("rb") as f:
    ...     first = f.readline()  # read in ranges, never copied whole
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from gemma_panel.errors import UserError

PREFIX = "gs://"
IMPERSONATE_ENV = "GEMMA_PANEL_IMPERSONATE_SERVICE_ACCOUNT"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
READ_CHUNK = 1 << 20  # bytes fetched per ranged GET when streaming a file
# The permission each action needs, named in the sentence when the server does not say.
PERMISSIONS = {"read": "storage.objects.get", "write": "storage.objects.create",
               "list": "storage.objects.list", "bucket": "storage.buckets.get"}
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
_PERMISSION_IN_MESSAGE = re.compile(r"storage\.[a-zA-Z]+\.[a-zA-Z]+")


class StorageAccessError(UserError, PermissionError):
    """A bucket or object that is missing or that this identity may not use."""


@dataclass(frozen=True)
class GsUrl:
    """``gs://bucket/name``: a bucket and an object name (or prefix; may be empty)."""

    bucket: str
    name: str = ""

    def __str__(self) -> str:
        return f"{PREFIX}{self.bucket}/{self.name}"

    def child(self, relative: str) -> GsUrl:
        """The object ``relative`` below this prefix (``/``-joined)."""
        base = self.name.rstrip("/")
        return GsUrl(self.bucket, f"{base}/{relative}" if base else relative)


def is_gs_url(text: object) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX)


def parse_gs_url(text: str) -> GsUrl:
    """``gs://bucket/path`` as a `GsUrl`; a `UserError` saying what is wrong otherwise."""
    if not is_gs_url(text):
        raise UserError(f"{text!r} is not a gs:// path: write gs://BUCKET/PATH.")
    bucket, _, name = text[len(PREFIX):].partition("/")
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise UserError(f"{text}: {bucket!r} is not a valid bucket name (3-63 lower-case "
                        "letters, digits, dots, dashes or underscores); check the path.")
    return GsUrl(bucket, name)


# ------------------------------------------------------------------ client and identity

def credentials(impersonate: str | None = None):
    """(credentials, project) the way Google's libraries find them, impersonating
    ``impersonate`` (or ``$GEMMA_PANEL_IMPERSONATE_SERVICE_ACCOUNT``) when given."""
    import google.auth
    from google.auth import exceptions, impersonated_credentials

    try:
        creds, project = google.auth.default(scopes=SCOPES)
    except exceptions.DefaultCredentialsError as exc:
        raise UserError(
            "no Google Cloud credentials found: run 'gcloud auth application-default "
            "login', or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file "
            f"({exc})") from None
    target = impersonate or os.environ.get(IMPERSONATE_ENV)
    if target:
        creds = impersonated_credentials.Credentials(
            source_credentials=creds, target_principal=target, target_scopes=list(SCOPES))
    return creds, project


def make_client(project: str | None = None, impersonate: str | None = None):
    """A ``google.cloud.storage.Client``; anonymous against ``$STORAGE_EMULATOR_HOST``."""
    from google.cloud import storage

    if os.environ.get(EMULATOR_ENV):
        return storage.Client(project=project)
    creds, found = credentials(impersonate)
    return storage.Client(project=project or found, credentials=creds)


_CLIENTS: dict[tuple, object] = {}


def default_client():
    """One client per environment (emulator, key file, impersonation), reused."""
    key = tuple(os.environ.get(k) for k in (EMULATOR_ENV, "API_ENDPOINT_OVERRIDE",
                                            "GOOGLE_APPLICATION_CREDENTIALS",
                                            IMPERSONATE_ENV, "GOOGLE_CLOUD_PROJECT"))
    if key not in _CLIENTS:
        _CLIENTS[key] = make_client()
    return _CLIENTS[key]


def identity(client=None) -> str:
    """Who the client acts as, in words (for the dashboard and the error sentences)."""
    client = client or default_client()
    return describe_credentials(getattr(client, "_credentials", None))


def describe_credentials(creds) -> str:
    from google.auth import credentials as base
    from google.auth import impersonated_credentials
    from google.oauth2 import service_account

    if creds is None or isinstance(creds, base.AnonymousCredentials):
        host = os.environ.get(EMULATOR_ENV)
        return f"anonymous (the storage emulator at {host})" if host else "anonymous"
    if isinstance(creds, impersonated_credentials.Credentials):
        source = describe_credentials(creds._source_credentials)
        return f"{creds.service_account_email} (impersonated by {source})"
    if isinstance(creds, service_account.Credentials):
        key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        where = f"key file {key}" if key else "a service-account key"
        return f"service account {creds.service_account_email} ({where})"
    account = getattr(creds, "account", "") or getattr(creds, "service_account_email", "")
    kind = type(creds).__module__
    if "compute_engine" in kind:
        return f"the VM's service account {account or 'default'} (metadata server)"
    if account:
        return f"{account} (application default credentials)"
    return f"your application default credentials ({type(creds).__name__})"


# ------------------------------------------------------------------ errors in one sentence

def access_error(exc: Exception, url: GsUrl, action: str, client) -> UserError | None:
    """``exc`` from the storage library as one sentence, or None when it is not about
    access (a bug or an outage keeps its traceback)."""
    from google.api_core import exceptions as gexc

    who = identity(client)
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        found = _PERMISSION_IN_MESSAGE.search(getattr(exc, "message", "") or str(exc))
        permission = found.group(0) if found else PERMISSIONS[action]
        return StorageAccessError(
            f"{who} may not {action} {url} in bucket {url.bucket}: it lacks "
            f"{permission}; grant it a role that has it (roles/storage.objectViewer to "
            "read, roles/storage.objectCreator to write) on the bucket, or use another "
            "identity.")
    if isinstance(exc, gexc.PreconditionFailed):
        return StorageAccessError(
            f"{url} already exists (another run wrote it?): uploads never overwrite; "
            "choose another destination or delete that object first.")
    if isinstance(exc, gexc.NotFound):
        if not _bucket_exists(client, url.bucket):
            return StorageAccessError(
                f"the bucket {url.bucket} does not exist or {who} cannot see it: create it "
                f"('gcloud storage buckets create gs://{url.bucket}') or fix the path.")
        return StorageAccessError(f"{url}: no such object in bucket {url.bucket} (as {who}); "
                                  "check the path ('gcloud storage ls').")
    return None


def _bucket_exists(client, bucket: str) -> bool:
    from google.api_core.exceptions import GoogleAPICallError

    try:
        return client.bucket(bucket).exists()
    except GoogleAPICallError:  # no storage.buckets.get either: the bucket is not visible
        return False


@contextlib.contextmanager
def explained(url: GsUrl, action: str, client) -> Iterator[None]:
    """Turn the storage library's access errors inside the block into one sentence."""
    try:
        yield
    except Exception as exc:
        error = access_error(exc, url, action, client)
        if error is None:
            raise
        raise error from None


# ------------------------------------------------------------------ streamed reads

@dataclass(frozen=True)
class _Stat:
    st_size: int


class GcsFile:
    """A gs:// object that the data readers open like a local path: ``open``, ``stat``,
    ``suffix``; reads are ranged GETs of `READ_CHUNK` bytes, never a whole copy."""

    def __init__(self, url: GsUrl, blob, client):
        self.url, self.blob, self.client = url, blob, client
        self.suffix = PurePosixPath(url.name).suffix
        self.name = PurePosixPath(url.name).name

    def __str__(self) -> str:
        return str(self.url)

    def __repr__(self) -> str:
        return f"GcsFile({str(self.url)!r})"

    def stat(self) -> _Stat:
        return _Stat(int(self.blob.size or 0))

    def open(self, mode: str = "r", encoding: str | None = None, errors: str | None = None,
             newline: str | None = None):
        if mode not in ("r", "rb", "rt"):
            raise ValueError(f"gs:// files open for reading only, not {mode!r}")
        # Each range must come from the generation checked at open: a file replaced while it
        # is read fails (412) instead of mixing two versions.
        raw = self.blob.open("rb", chunk_size=READ_CHUNK,
                             if_generation_match=self.blob.generation)
        buffered = io.BufferedReader(raw, buffer_size=READ_CHUNK)
        if mode == "rb":
            return buffered
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline=newline)


def open_gs(text: str, client=None) -> GcsFile:
    """The object at ``text`` for streamed reading, after checking it can be read."""
    url = parse_gs_url(text)
    client = client or default_client()
    if not url.name or url.name.endswith("/"):
        raise UserError(f"{url}: names a folder; pass one data file (gs://BUCKET/PATH/FILE).")
    blob = client.bucket(url.bucket).blob(url.name)
    with explained(url, "read", client):
        blob.reload()
    return GcsFile(url, blob, client)


def fingerprint(text: str, client=None) -> dict:
    """What identifies the object's content, from its metadata (nothing is downloaded): the
    run store compares it on resume, as it compares a local file's SHA-256."""
    found = open_gs(text, client)
    blob = found.blob
    return {"path": text, "bytes": int(blob.size or 0), "generation": int(blob.generation or 0),
            "md5": blob.md5_hash or blob.crc32c}


# ------------------------------------------------------------------ checks before a run

def preflight(paths: Iterable[str] = (), writes: Iterable[str] = (), client=None) -> str:
    """Check before a run starts that every gs:// file in ``paths`` can be read and every
    gs:// prefix in ``writes`` can be written (local paths are skipped); raise the first
    problem as a `StorageAccessError`, return the identity that was checked."""
    gs_reads = [p for p in paths if is_gs_url(p)]
    gs_writes = [p for p in writes if is_gs_url(p)]
    if not gs_reads and not gs_writes:
        return ""
    client = client or default_client()
    for path in gs_reads:
        open_gs(path, client)
    for path in gs_writes:
        check_writable(parse_gs_url(path), client)
    return identity(client)


def check_writable(url: GsUrl, client) -> None:
    """Whether objects can be created under ``url``: the bucket's testIamPermissions, which
    answers for the caller without writing anything."""
    bucket = client.bucket(url.bucket)
    with explained(url, "write", client):
        granted = set(bucket.test_iam_permissions([PERMISSIONS["write"]]))
    if PERMISSIONS["write"] not in granted:
        raise StorageAccessError(
            f"{identity(client)} may not write {url} in bucket {url.bucket}: it lacks "
            f"{PERMISSIONS['write']}; grant it roles/storage.objectCreator on the bucket, "
            "or use another identity.")


def signed_url(text: str, minutes: int = 15, client=None) -> str:
    """A V4 signed URL that lets whoever holds it download ``text`` for ``minutes``
    (the dashboard's export downloads); it needs a service-account identity to sign: a key
    file signs here, an impersonated one asks IAM's signBlob (`signing_error` says why not)."""
    from datetime import timedelta

    from google.auth import exceptions

    url = parse_gs_url(text)
    client = client or default_client()
    blob = client.bucket(url.bucket).blob(url.name)
    try:
        return blob.generate_signed_url(version="v4", expiration=timedelta(minutes=minutes),
                                        method="GET")
    except AttributeError as exc:  # the credentials hold no key and cannot ask IAM to sign
        raise UserError(
            f"{identity(client)} cannot sign a download link for {url}: signing needs a "
            "service account; set GOOGLE_APPLICATION_CREDENTIALS to its key file or "
            f"impersonate it ({IMPERSONATE_ENV}).") from exc
    except (exceptions.TransportError, exceptions.RefreshError) as exc:
        raise signing_error(client, url, exc) from None


def signing_error(client, url: GsUrl, exc: Exception) -> UserError:
    """IAM refusing (or not answering) an impersonated identity's signBlob, in one
    sentence: who signs, who asks, the permission and how to grant it."""
    from google.auth import impersonated_credentials

    creds = getattr(client, "_credentials", None)
    said = str(exc).splitlines()[0][:200]
    if not isinstance(creds, impersonated_credentials.Credentials):
        return UserError(f"{identity(client)} could not sign a download link for {url} "
                         f"({said}); check the network and the identity, then reload.")
    target, source = creds.service_account_email, creds._source_credentials
    if "PERMISSION_DENIED" not in said and "403" not in said and "signBlob" not in said:
        return UserError(f"{identity(client)} could not reach IAM to sign a download link "
                         f"for {url} ({said}); check the network, then reload.")
    member = _member(source)
    return UserError(
        f"{describe_credentials(source)} may not sign as {target} (needed for the download "
        f"link of {url}): it lacks iam.serviceAccounts.signBlob on {target}; grant it with "
        f"'gcloud iam service-accounts add-iam-policy-binding {target} --member={member} "
        "--role=roles/iam.serviceAccountTokenCreator', or use the service account's key "
        "file (GOOGLE_APPLICATION_CREDENTIALS) instead of impersonating it.")


def _member(creds) -> str:
    """The IAM member of ``creds`` (serviceAccount:EMAIL or user:EMAIL), for a grant."""
    email = getattr(creds, "service_account_email", "") or ""
    if email and email != "default":
        return f"serviceAccount:{email}"
    account = getattr(creds, "account", "") or ""
    return f"user:{account}" if account else "user:YOUR_EMAIL"


def register() -> None:
    """Let the data readers open gs:// paths (streamed through `open_gs`)."""
    from gemma_panel.data.sources import register_remote_opener

    register_remote_opener("gs", open_gs)
