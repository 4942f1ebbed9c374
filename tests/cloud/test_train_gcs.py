"""Train the tiny random Gemma 3 from a gs:// dataset; checkpoints to and from the bucket.

All on gcp-storage-emulator: a run on the gs:// copy of a dataset is stopped, its checkpoint
uploaded (checksums matching), deleted here and fetched back; the resumed run ends with the
weights of an uninterrupted run on the local file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil

import numpy as np
import pytest

from gemma_panel.cloud.transfer import download_folder, upload_folder
from tests.models.tiny_gguf import write_tiny_gemma_gguf
from tests.training.conftest import TINY


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_gemma_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", "gemma3",
                                 **TINY)


ROWS = b"".join(json.dumps({"prompt": f"Add one to {i}.", "response": f"It is {i + 1}."}
                           ).encode() + b"\n" for i in range(30))


def _recipe(model, data, *extra):
    from gemma_panel.config import load_recipe

    return load_recipe(None, [
        f"model.source={model}", f"data.train_path={data}", "data.sequence_length=32",
        "data.validation_fraction=0.2", "train.max_steps=4", "train.warmup_steps=1",
        "train.batch_size=2", "train.checkpoint_every=2", "train.learning_rate=0.003",
        "eval.every_steps=4", "eval.num_samples=1", "eval.task_examples=1",
        "eval.max_new_tokens=2", "lora.dropout=0.1", *extra])


def _weights(result):
    return [np.asarray(v.value) for v in result.model.backbone.trainable_variables]


def _same(a, b):
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.timeout(600)
def test_train_from_gs_data_and_resume_from_gcs_checkpoints(gcs, tiny_model, tmp_path):
    from gemma_panel.training import train
    from gemma_panel.training.checkpoint import latest_checkpoint

    _, bucket = gcs
    local = tmp_path / "pairs.jsonl"
    local.write_bytes(ROWS)
    bucket.blob("data/pairs.jsonl").upload_from_string(ROWS)
    url = f"gs://{bucket.name}/data/pairs.jsonl"
    straight = train(_recipe(tiny_model, local), tmp_path / "local")

    calls = {"n": 0}

    def stop_after_two():
        calls["n"] += 1
        return calls["n"] >= 2

    run = tmp_path / "stopped"
    first = train(_recipe(tiny_model, url), run, should_stop=stop_after_two)
    assert first.status == "cancelled" and first.step == 2
    checkpoint = latest_checkpoint(run)
    remote = f"gs://{bucket.name}/runs/stopped/checkpoints/{checkpoint.name}"
    uploaded = upload_folder(checkpoint, remote)
    for item in uploaded:
        name = item.url.removeprefix(f"gs://{bucket.name}/")
        blob = bucket.get_blob(name)
        data = (checkpoint / name.removeprefix(
            f"runs/stopped/checkpoints/{checkpoint.name}/")).read_bytes()
        assert blob.md5_hash == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert len(uploaded) == sum(1 for p in checkpoint.rglob("*") if p.is_file())

    shutil.rmtree(checkpoint)  # only the bucket holds it now
    download_folder(remote, checkpoint)
    sink = StepSink()
    resumed = train(_recipe(tiny_model, url), run, sink, resume=True)
    assert resumed.status == "succeeded" and resumed.step == 4
    assert min(sink.steps) == 3  # it went on from the fetched step-2 checkpoint
    _same(straight, resumed)  # gs:// data and a checkpoint from the bucket: the local run


class StepSink:
    """Keeps the steps training reported loss for."""

    def __init__(self):
        self.steps = []

    def on_metrics(self, step, tokens, metrics):
        if "loss" in metrics:
            self.steps.append(step)

    def __getattr__(self, name):  # on_start, on_samples, on_checkpoint, on_log, on_end
        return lambda *args: None
