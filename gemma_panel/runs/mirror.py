"""A run folder's copy on Cloud Storage: written as the run trains, read back by any store.

    gs://bucket/runs/<name>/            (``train.storage``/RUN_ID, or a Vertex AI job's folder)
        records/<time>-<hex>.jsonl      metrics, samples and checkpoints since the last chunk
        checkpoints/step-000050/...     each whole checkpoint, its meta.json uploaded last

Every upload is create-only and verified (``cloud.transfer``), so the worker never rewrites
a file: each checkpoint and each end of the run adds a new record chunk, and a reader
imports the chunks after its cursor (``RunStore.import_remote_chunk``), each exactly once.
Only process 0 of a multi-host job writes. A replica that starts on an empty folder (a
preempted spot job restarted by Vertex AI) first fetches the newest whole checkpoint, so it
goes on from there.
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
META = "meta.json"


class MirrorSink:
    """An event sink that copies a run's metrics, samples and checkpoints to ``remote``."""

    def __init__(self, remote: str, *, client=None):
        from gemma_panel.cloud.gcs import default_client

        self.remote = remote.rstrip("/")
        self.client = client or default_client()
        self.rows: list[dict] = []

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

        if not self.rows or not _primary():
            self.rows = []
            return
        name = f"{time.time_ns():020d}-{secrets.token_hex(3)}.jsonl"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name)
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, default=str) + "\n" for r in self.rows)
            upload_file(path, f"{self.remote}/{RECORDS}{name}", client=self.client)
        self.rows = []


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
    done = 0
    for blob in blobs:
        chunk = blob.name[len(url.name):]
        if run.remote_cursor and chunk <= run.remote_cursor:
            continue
        with explained(url, "read", client):
            text = blob.download_as_text()
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        done += store.import_remote_chunk(run.id, chunk, rows)
    return done


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
