"""A run folder's copy on Cloud Storage: written as the run trains, read back by any store.

    gs://bucket/runs/<name>/            (``train.storage``/RUN_ID, or a Vertex AI job's folder)
        records/<time>-<hex>.jsonl      metrics, samples, checkpoints, exports and the
                                        worker log's new lines since the last chunk
        checkpoints/step-000050/...     each whole checkpoint, its meta.json uploaded last
        exports/<name>/...              each finished export, its manifest.json uploaded last

Every upload is create-only and verified (``cloud.transfer``), so the worker never rewrites
a file: each checkpoint and each end of the run adds a new record chunk, and a reader
imports the chunks after its cursor (``RunStore.import_remote_chunk``), each exactly once.
Only process 0 of a multi-host job writes. A replica that starts on an empty folder (a
preempted spot job restarted by Vertex AI) first fetches the newest whole checkpoint, so it
goes on from there.

A reader (``read_back``) brings each chunk's rows into its store and the rest into the
run's local folder: the worker log's pieces under ``logs/remote/`` (``logs/worker.log`` is
made again from them, in order), and each export's manifest and README into
``exports/<name>/`` (so the dashboard lists it); the export's files stay on Cloud Storage,
at `remote_export`, downloaded through signed URLs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from pathlib import Path

from gemma_panel.training.checkpoint import checkpoint_step

RECORDS = "records/"
CHECKPOINTS = "checkpoints/"
EXPORTS = "exports/"
META = "meta.json"
BROUGHT_BACK = ("manifest.json", "README.md")  # an export's description, copied to a reader


class MirrorSink:
    """An event sink that copies a run's metrics, samples and checkpoints to ``remote``."""

    def __init__(self, remote: str, *, client=None, log: str | os.PathLike | None = None):
        """``log``: the worker's log file, whose new lines go with every chunk."""
        from gemma_panel.cloud.gcs import default_client

        self.remote = remote.rstrip("/")
        self.client = client or default_client()
        self.rows: list[dict] = []
        self.log = Path(log) if log else None
        self.log_sent = 0  # bytes of the log already in a chunk
        self.exported: set[str] = set()

    def on_start(self, info):
        if info.get("total_steps") is not None:
            self.rows.append({"kind": "total_steps", "total": int(info["total_steps"])})

    def on_metrics(self, step, tokens, metrics):
        self.rows.append({"kind": "metrics", "step": int(step), "tokens": int(tokens),
                          "values": dict(metrics), "time": time.time()})

    def on_samples(self, step, samples):
        self.rows.append({"kind": "samples", "step": int(step), "samples": list(samples),
                          "time": time.time()})

    def on_checkpoint_start(self, step):
        pass

    def on_checkpoint(self, step, path, best):
        from gemma_panel.cloud.gcs import StorageAccessError
        from gemma_panel.cloud.transfer import upload_folder

        if not _primary():
            return

        url = f"{self.remote}/{CHECKPOINTS}{Path(path).name}"
        try:
            upload_folder(path, url, client=self.client, last=(META,))
        except StorageAccessError as exc:  # a replica before this one got that far
            if "already holds objects" not in str(exc):
                raise
            print(f"mirror: {url} is there already; kept as it is", flush=True)
        self.rows.append({"kind": "checkpoint", "step": int(step), "path": url,
                          "best": bool(best)})
        self.flush()

    def on_log(self, message):
        pass

    def on_end(self, status, message):
        self.flush()

    def flush(self) -> None:
        """Upload the rows gathered since the last chunk as a new chunk."""
        from gemma_panel.cloud.transfer import upload_file

        if not _primary():
            self.rows = []
            return
        self._take_log()
        if not self.rows:
            return
        name = f"{time.time_ns():020d}-{secrets.token_hex(3)}.jsonl"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name)
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, default=str) + "\n" for r in self.rows)
            upload_file(path, f"{self.remote}/{RECORDS}{name}", client=self.client)
        self.rows = []


    def _take_log(self) -> None:
        """A row with the log's lines written since the last chunk (whole lines only)."""
        if self.log is None or not self.log.is_file():
            return
        with self.log.open("rb") as f:
            f.seek(self.log_sent)
            data = f.read()
        data = data[:data.rfind(b"\n") + 1]
        if data:
            self.rows.append({"kind": "log", "text": data.decode("utf-8", "replace")})
            self.log_sent += len(data)

    def finish(self, exports: str | os.PathLike) -> None:
        """At the run's end: upload each finished export in ``exports`` not uploaded yet
        (its manifest last), then a last chunk with them and the log's last lines."""
        from gemma_panel.export.manifest import is_finished

        if not _primary():
            return
        folders = sorted(p for p in Path(exports).iterdir() if is_finished(p)) \
            if Path(exports).is_dir() else []
        for folder in folders:
            if folder.name not in self.exported:
                self._upload_export(folder)
        self.flush()

    def _upload_export(self, folder: Path) -> None:
        from gemma_panel.cloud.gcs import StorageAccessError
        from gemma_panel.cloud.transfer import upload_folder

        url = f"{self.remote}/{EXPORTS}{folder.name}"
        try:
            upload_folder(folder, url, client=self.client)
        except StorageAccessError as exc:  # a replica before this one made it
            if "already holds objects" not in str(exc):
                raise
            print(f"mirror: {url} is there already; kept as it is", flush=True)
        self.exported.add(folder.name)
        self.rows.append({"kind": "export", "name": folder.name, "path": url})


def finish_mirrors(sinks, folder, status: str, message: str | None):
    """Let each `MirrorSink` in ``sinks`` upload the run's exports and last log lines before
    the run's status is recorded; (status, message), failed when that copy failed: the job's
    disk goes when it ends, so what is not copied is lost."""
    from gemma_panel.errors import as_user_error

    from . import statuses as st

    for sink in sinks:
        if not isinstance(sink, MirrorSink):
            continue
        try:
            sink.finish(folder.exports)
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
            said = as_user_error(exc)
            why = str(said) if said is not None else f"{type(exc).__name__}: {exc}"
            print(f"mirror: {why}", flush=True)
            return st.FAILED, (f"the run's exports and log could not be copied to "
                               f"{sink.remote}: {why}")
    return status, message


def _primary() -> bool:
    """Process 0 of the job (of a multi-host one: the others' metrics are the same)."""
    import jax

    return jax.process_index() == 0


def read_back(store, run, *, client=None) -> int:
    """Import the record chunks of ``run.remote_dir`` not yet in ``store``; how many."""
    from gemma_panel.cloud.gcs import default_client, explained, parse_gs_url

    url = parse_gs_url(run.remote_dir.rstrip("/") + "/" + RECORDS)
    client = client or default_client()
    with explained(url, "list", client):
        blobs = sorted(client.list_blobs(url.bucket, prefix=url.name), key=lambda b: b.name)
    done, folder = 0, store.folder(run.id)
    for blob in blobs:
        chunk = blob.name[len(url.name):]
        if run.remote_cursor and chunk <= run.remote_cursor:
            continue
        with explained(url, "read", client):
            text = blob.download_as_text()
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        _bring_back(folder, chunk, rows, client)  # idempotent: before the cursor moves
        done += store.import_remote_chunk(run.id, chunk, rows)
    return done


def remote_export(run, name: str) -> str | None:
    """Where the files of the run's export ``name`` are on Cloud Storage (None: a run
    without a copy there)."""
    return f"{run.remote_dir.rstrip('/')}/{EXPORTS}{name}" if run.remote_dir else None


def _bring_back(folder, chunk: str, rows: list[dict], client) -> None:
    """A chunk's log lines and exports into the run's local folder."""
    logs = [r["text"] for r in rows if r["kind"] == "log"]
    if logs:
        from gemma_panel.files import write_atomic

        pieces = folder.log_path.parent / "remote"
        pieces.mkdir(parents=True, exist_ok=True)
        write_atomic(pieces / f"{Path(chunk).stem}.log", "".join(logs))
        write_atomic(folder.log_path, "".join(
            p.read_text(encoding="utf-8") for p in sorted(pieces.glob("*.log"))))
    for row in rows:
        if row["kind"] == "export" and not (folder.exports / row["name"]).exists():
            _bring_back_export(row["path"], folder.exports / row["name"], client)


def _bring_back_export(url: str, target: Path, client) -> None:
    """The export's manifest and README (its files stay on Cloud Storage), whole or not."""
    from gemma_panel.cloud.gcs import explained, parse_gs_url
    from gemma_panel.cloud.transfer import download_verified
    from gemma_panel.files import staged_folder

    base = parse_gs_url(url.rstrip("/"))
    with staged_folder(target) as staging:
        for name in BROUGHT_BACK:
            part = base.child(name)
            with explained(part, "read", client):
                blob = client.bucket(part.bucket).get_blob(part.name)
            if blob is not None:
                download_verified(blob, part, staging / name, client)


def fetch_latest_checkpoint(remote: str, checkpoints: Path, *, client=None) -> Path | None:
    """Download the newest whole checkpoint under ``remote`` into ``checkpoints`` (unless a
    whole one is here already); the local path, or None when the bucket holds none."""
    from gemma_panel.cloud.gcs import default_client, explained, parse_gs_url
    from gemma_panel.cloud.transfer import download_folder
    from gemma_panel.training.checkpoint import whole_checkpoints

    if whole_checkpoints(checkpoints):
        return None
    url = parse_gs_url(remote.rstrip("/") + "/" + CHECKPOINTS)
    client = client or default_client()
    with explained(url, "list", client):
        names = [b.name[len(url.name):] for b in client.list_blobs(url.bucket, prefix=url.name)]
    whole = [n.split("/")[0] for n in names
             if re.fullmatch(r"step-[0-9]{6,}/" + META, n)]
    if not whole:
        return None
    newest = max(whole, key=checkpoint_step)
    target = Path(checkpoints) / newest
    download_folder(f"gs://{url.bucket}/{url.name}{newest}", target, client=client)
    return target
