"""A run folder kept on Cloud Storage (``train.storage``), on gcp-storage-emulator.

The worker (in this process, with the fake trainer of tests/runs) writes the copy; a second
store, which only knows the folder's gs:// name and the Vertex AI job behind it (the
loopback JobService), reads its metrics, samples and checkpoints back. A replica that starts
on the folder of a crashed one goes on from its last checkpoint there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.runs import RunStore
from gemma_panel.runs.mirror import read_back
from gemma_panel.runs.remote import poll
from gemma_panel.runs.worker import run_worker

ROOT = Path(__file__).parents[2]
FAKE = "tests.runs.fake_trainer:train"


@pytest.fixture(autouse=True)
def fast_fake_steps(monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0")


def _recipe(name, *extra):
    return load_recipe(ROOT / "recipes" / "quickstart.yaml", [
        f"name={name}", "train.max_steps=6", "train.checkpoint_every=2", *extra])


def _rows(store, run_id):
    return [(m.step, m.tokens, m.name, m.value) for m in store.metrics(run_id)]


def test_a_second_store_reads_the_run_from_the_bucket(gcs, vertex_api, tmp_path):
    _, bucket = gcs
    trainer_side = RunStore(tmp_path / "job")
    run = trainer_side.create_run(_recipe("mirrored", f"train.storage=gs://{bucket.name}/runs"),
                                  trainer=FAKE, cwd=ROOT)
    assert run.remote_dir == f"gs://{bucket.name}/runs/{run.id}"
    assert run_worker(run.id, trainer_side) == 0
    names = {b.name for b in bucket.list_blobs(prefix=f"runs/{run.id}/")}
    assert f"runs/{run.id}/checkpoints/step-000006/meta.json" in names
    assert sum(n.startswith(f"runs/{run.id}/records/") for n in names) >= 3

    laptop = RunStore(tmp_path / "laptop")
    name = "projects/p1/locations/us-central1/customJobs/7"
    vertex_api.jobs[name] = {"name": name, "state": "JOB_STATE_SUCCEEDED"}
    seen = laptop.create_remote_run(_recipe("mirrored"), backend="vertex", job_name=name,
                                    remote_dir=run.remote_dir)
    assert laptop.metrics(seen.id) == []
    assert poll(laptop) == []
    after = laptop.get(seen.id)
    assert after.status == "succeeded"
    assert _rows(laptop, seen.id) == _rows(trainer_side, run.id) != []
    assert [s.tuned for s in laptop.samples(seen.id)] == ["4 at 5"]
    assert (after.step, after.total_steps, after.checkpoint_step) == (6, 6, 6)
    assert after.checkpoint_path == f"{run.remote_dir}/checkpoints/step-000006"
    assert read_back(laptop, after) == 0  # every chunk is imported once
    assert len(_rows(laptop, seen.id)) == len(_rows(trainer_side, run.id))


def test_a_restarted_replica_goes_on_from_the_last_checkpoint_there(gcs, tmp_path):
    _, bucket = gcs
    folder = f"gs://{bucket.name}/jobs/j1"
    first = RunStore(tmp_path / "replica-1")
    run = first.create_run(_recipe("crash"), trainer=FAKE, cwd=ROOT, remote_dir=folder)
    assert run_worker(run.id, first) == 1  # the fake trainer crashes at step 3
    assert bucket.get_blob("jobs/j1/checkpoints/step-000002/meta.json") is not None

    second = RunStore(tmp_path / "replica-2")  # a new machine: nothing local
    run = second.create_run(_recipe("restarted"), trainer=FAKE, cwd=ROOT, remote_dir=folder)
    assert run_worker(run.id, second) == 0
    steps = sorted({m.step for m in second.metrics(run.id)})
    assert steps == [3, 4, 5, 6]  # from the step-2 checkpoint the first replica left
    assert bucket.get_blob("jobs/j1/checkpoints/step-000006/meta.json") is not None


def test_storage_must_be_a_gs_prefix():
    from gemma_panel.config import RecipeError

    with pytest.raises(RecipeError, match="train.storage: must be a gs://BUCKET/PATH"):
        _recipe("x", "train.storage=/tmp/runs")


def test_a_missing_bucket_is_refused_before_the_run_is_queued(gcs, tmp_path):
    from gemma_panel.cloud.gcs import StorageAccessError

    store = RunStore(tmp_path / "home")
    with pytest.raises(StorageAccessError, match="no-such-bucket-9"):
        store.create_run(_recipe("x", "train.storage=gs://no-such-bucket-9/runs"),
                         trainer=FAKE, cwd=ROOT)
    assert store.list_runs() == []


def _fake_exports(monkeypatch, log_lines: list[str]):
    """The recipe's listed exports, made without a model: a finished, verified folder with
    a manifest (as export_run leaves one), and a line in the worker's log."""
    from gemma_panel.export import listed
    from gemma_panel.export.manifest import write_manifest

    def export_listed(run_dir, recipe, on_done=lambda outcome: None):
        folder = Path(run_dir) / "exports" / "lora-step000006"
        folder.mkdir(parents=True)
        (folder / "adapter.weights.h5").write_bytes(b"weights " * 1000)
        (folder / "README.md").write_text("# a LoRA adapter\n")
        write_manifest(folder, {"format": "lora", "verification": {"passed": True,
                                                                   "checks": []}})
        with (Path(run_dir) / "logs" / "worker.log").open("a") as log:
            log.writelines(log_lines)
        outcome = listed.ListedExport("lora", str(folder), None)
        on_done(outcome)
        return [outcome]

    monkeypatch.setattr(listed, "export_listed", export_listed)


def _job_run_on_laptop(tmp_path, vertex_api, remote_dir, name):
    laptop = RunStore(tmp_path / "laptop")
    job = f"projects/p1/locations/us-central1/customJobs/{name}"
    vertex_api.jobs[job] = {"name": job, "state": "JOB_STATE_SUCCEEDED"}
    return laptop, laptop.create_remote_run(_recipe("mirrored"), backend="vertex",
                                            job_name=job, remote_dir=remote_dir)


def test_exports_and_the_worker_log_come_back_to_the_laptops_run_folder(
        gcs, vertex_api, tmp_path, monkeypatch):
    from gemma_panel.export.manifest import read_manifest
    from gemma_panel.runs.mirror import remote_export

    _, bucket = gcs
    _fake_exports(monkeypatch, ["exporting lora\n", "half a line"])
    trainer_side = RunStore(tmp_path / "job")
    run = trainer_side.create_run(_recipe("exported", f"train.storage=gs://{bucket.name}/runs",
                                          "export.formats=[lora]"), trainer=FAKE, cwd=ROOT)
    job_folder = trainer_side.folder(run.id)
    job_folder.log_path.write_text("worker started\n")  # as the worker's redirected output
    assert run_worker(run.id, trainer_side) == 0
    assert trainer_side.get(run.id).status == "succeeded"
    export = f"runs/{run.id}/exports/lora-step000006/"
    assert {b.name for b in bucket.list_blobs(prefix=export)} == {
        export + "adapter.weights.h5", export + "README.md", export + "manifest.json"}

    laptop, seen = _job_run_on_laptop(tmp_path, vertex_api, run.remote_dir, "8")
    assert poll(laptop) == []
    here = laptop.folder(seen.id)
    brought = here.exports / "lora-step000006"
    assert read_manifest(brought) == read_manifest(job_folder.exports / "lora-step000006")
    assert (brought / "README.md").read_text() == "# a LoRA adapter\n"
    assert not (brought / "adapter.weights.h5").exists()  # it stays on Cloud Storage
    assert remote_export(laptop.get(seen.id), "lora-step000006") == \
        f"{run.remote_dir}/exports/lora-step000006"
    assert here.log_path.read_text() == "worker started\nexporting lora\n"  # whole lines
    assert read_back(laptop, laptop.get(seen.id)) == 0
    assert here.log_path.read_text() == "worker started\nexporting lora\n"


def test_a_run_whose_exports_cannot_be_copied_fails_saying_so(gcs, tmp_path, monkeypatch):
    from gemma_panel.cloud import transfer
    from gemma_panel.cloud.gcs import StorageAccessError

    _, bucket = gcs
    _fake_exports(monkeypatch, [])
    real = transfer.upload_folder

    def refuse_exports(local, url, **kwargs):
        if "/exports/" in str(url):
            raise StorageAccessError(f"anonymous may not write {url}: it lacks "
                                     "storage.objects.create")
        return real(local, url, **kwargs)

    monkeypatch.setattr(transfer, "upload_folder", refuse_exports)
    store = RunStore(tmp_path / "job")
    run = store.create_run(_recipe("exported", f"train.storage=gs://{bucket.name}/runs",
                                   "export.formats=[lora]"), trainer=FAKE, cwd=ROOT)
    assert run_worker(run.id, store) != 0
    after = store.get(run.id)
    assert after.status == "failed"
    assert after.message.startswith(f"the run's exports and log could not be copied to "
                                    f"{run.remote_dir}: anonymous may not write")


def test_a_read_back_cut_before_its_chunk_is_recorded_does_not_double_the_log(
        gcs, vertex_api, tmp_path, monkeypatch):
    """The chunk's log lines land in the folder before the store records the chunk; a
    read that stops between the two and starts again writes the same log, not twice."""
    _, bucket = gcs
    _fake_exports(monkeypatch, ["exporting lora\n"])
    trainer_side = RunStore(tmp_path / "job")
    run = trainer_side.create_run(_recipe("exported", f"train.storage=gs://{bucket.name}/runs",
                                          "export.formats=[lora]"), trainer=FAKE, cwd=ROOT)
    trainer_side.folder(run.id).log_path.write_text("worker started\n")
    assert run_worker(run.id, trainer_side) == 0

    laptop, seen = _job_run_on_laptop(tmp_path, vertex_api, run.remote_dir, "9")
    real = RunStore.import_remote_chunk
    monkeypatch.setattr(RunStore, "import_remote_chunk", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        read_back(laptop, seen)
    monkeypatch.setattr(RunStore, "import_remote_chunk", real)
    assert read_back(laptop, laptop.get(seen.id)) >= 3
    assert laptop.folder(seen.id).log_path.read_text() == "worker started\nexporting lora\n"
