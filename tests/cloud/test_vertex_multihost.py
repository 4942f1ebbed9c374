"""Jobs on several VMs: a multi-host TPU slice and several GPU machines.

The CustomJob the real SDK sends to the loopback JobService (tests/cloud/vertex_server.py)
is checked field by field; then each worker's environment is made the way Vertex AI makes
it from that job (CLUSTER_SPEC from the submitted worker pools), and
``distribution.multihost.initialize`` parses it for real. Only JAX's join itself is
recorded instead of made (it would wait for the other VMs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemma_panel.cli import main
from gemma_panel.cloud import vertex
from gemma_panel.cloud.vertex import JobOptions
from gemma_panel.config import load_recipe, recipe_to_yaml
from gemma_panel.distribution import multihost
from gemma_panel.errors import UserError

RECIPE = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def _submit(gcs, accelerator: str, replicas: int = 1) -> tuple[dict, str]:
    """Submit the quickstart recipe on gs:// data; the JSON body the server received."""
    _, bucket = gcs
    bucket.blob("d/train.jsonl").upload_from_string(b'{"prompt": "a", "response": "b"}\n')
    recipe = load_recipe(RECIPE, [f"data.train_path=gs://{bucket.name}/d/train.jsonl"])
    options = JobOptions(accelerator, f"gs://{bucket.name}/jobs", project="p1",
                         job_id="m1", replicas=replicas)
    _, folder = vertex.submit(recipe, recipe_to_yaml(recipe), options)
    return options, folder


def _body(vertex_api) -> dict:
    (body,) = [b for m, p, b in vertex_api.calls if m == "POST" and p.endswith("/customJobs")]
    return body


def _cluster_specs(body: dict) -> list[dict]:
    """The CLUSTER_SPEC Vertex AI gives each replica of ``body``'s worker pools, in the
    order of the pools and of their replicas."""
    pools = {f"workerpool{i}": [f"cmle-training-workerpool{i}-9f3a-{k}:2222"
                                for k in range(int(pool.get("replicaCount", 1)))]
             for i, pool in enumerate(body["jobSpec"]["workerPoolSpecs"])}
    return [{"cluster": pools, "environment": "cloud", "job": "{...}",
             "task": {"type": kind, "index": k, "trial": ""}}
            for kind, hosts in pools.items() for k in range(len(hosts))]


@pytest.fixture
def joins(monkeypatch):
    """What each ``multihost.initialize`` asked JAX for (JAX's join recorded, not made)."""
    import jax

    asked = []

    def join(**kwargs):
        asked.append(kwargs)

    monkeypatch.setattr(jax.distributed, "initialize", join)
    monkeypatch.setattr(jax, "process_count", lambda: asked[-1]["num_processes"] or 1)
    return asked


def _initialize(environ: dict, monkeypatch):
    monkeypatch.setattr(multihost, "_joined", None)
    return multihost.initialize(environ)


def test_gpu_machines_are_a_primary_pool_and_a_worker_pool(gcs, vertex_api, joins,
                                                           monkeypatch):
    from google.cloud import aiplatform_v1 as v1

    options, folder = _submit(gcs, "h100", replicas=3)
    body = _body(vertex_api)
    primary, workers = body["jobSpec"]["workerPoolSpecs"]
    assert primary["replicaCount"] == "1" and workers["replicaCount"] == "2"
    for pool in (primary, workers):  # the same machines, the same command
        assert pool["machineSpec"] == {"machineType": "a3-highgpu-8g",
                                       "acceleratorType": v1.AcceleratorType.NVIDIA_H100_80GB.value,
                                       "acceleratorCount": 8}
        assert pool["containerSpec"]["command"] == vertex.job_command(folder)
        assert "env" not in pool["containerSpec"]
    assert (vertex.processes(options), vertex.devices(options)) == (3, 24)

    clusters = [_initialize({"CLUSTER_SPEC": json.dumps(spec)}, monkeypatch)
                for spec in _cluster_specs(body)]
    assert [(c.coordinator, c.process_id, c.num_processes) for c in clusters] == [
        ("cmle-training-workerpool0-9f3a-0:2222", 0, 3),
        ("cmle-training-workerpool0-9f3a-0:2222", 1, 3),
        ("cmle-training-workerpool0-9f3a-0:2222", 2, 3)]
    assert [j["process_id"] for j in joins] == [0, 1, 2]
    assert {j["coordinator_address"] for j in joins} == {"cmle-training-workerpool0-9f3a-0:2222"}


def test_a_multi_host_tpu_slice_is_one_replica_whose_vms_join_the_slice(
        gcs, vertex_api, joins, monkeypatch):
    options, folder = _submit(gcs, "tpu-v5e-16")
    (pool,) = _body(vertex_api)["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "ct5lp-hightpu-4t", "tpuTopology": "4x4"}
    assert pool["replicaCount"] == "1"
    assert pool["containerSpec"]["command"] == vertex.job_command(folder)
    env = {e["name"]: e["value"] for e in pool["containerSpec"]["env"]}
    assert env == {"GEMMA_PANEL_TPU_HOSTS": "4"}
    assert (vertex.processes(options), vertex.devices(options)) == (4, 16)

    # Each of the slice's 4 VMs: the job's env, and a CLUSTER_SPEC of the one replica.
    (spec,) = _cluster_specs(_body(vertex_api))
    cluster = _initialize({**env, "CLUSTER_SPEC": json.dumps(spec)}, monkeypatch)
    assert cluster == multihost.Cluster("tpu", num_processes=4)
    # JAX finds the coordinator and this VM's place from the TPU VM itself.
    assert joins == [{"coordinator_address": None, "num_processes": 4, "process_id": None}]


def test_a_slice_that_joins_fewer_processes_than_its_hosts_is_said(joins, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_count", lambda: 1)
    with pytest.raises(multihost.MultihostError, match="has 4 hosts but JAX joined 1"):
        _initialize({"GEMMA_PANEL_TPU_HOSTS": "4"}, monkeypatch)
    assert multihost._joined is None


def test_a_v6e_slice_and_the_single_host_machines(capsys):
    def pools(*args):
        assert main(["cloud", "submit", str(RECIPE), "--output", "gs://my-bucket/jobs", "--job-id",
                     "x", "--dry-run", *args]) == 0
        out = capsys.readouterr()
        from google.cloud import aiplatform_v1

        aiplatform_v1.CustomJob.from_json(out.out)
        return json.loads(out.out)["jobSpec"]["workerPoolSpecs"], out.err

    (pool,), err = pools("--accelerator", "tpu-v6e-16")
    assert pool["machineSpec"] == {"machineType": "ct6e-standard-4t", "tpuTopology": "4x4"}
    assert "(4 VM(s), 16 devices)" in err
    (pool,), err = pools("--accelerator", "tpu-v5e-4")
    assert "env" not in pool["containerSpec"] and "(1 VM(s), 4 devices)" in err
    (primary, workers), err = pools("--accelerator", "l4", "--replicas", "2")
    assert (primary["replicaCount"], workers["replicaCount"]) == ("1", "1")


def test_several_tpu_replicas_are_refused_in_words(capsys):
    with pytest.raises(UserError, match="one slice, so tpu-v5e-4 takes 1 replica, not 2"):
        JobOptions("tpu-v5e-4", "gs://my-bucket/jobs", replicas=2)
    assert main(["cloud", "submit", str(RECIPE), "--output", "gs://my-bucket/jobs", "--dry-run",
                 "--accelerator", "tpu-v6e-8", "--replicas", "2"]) == 2
    assert "choose a bigger slice (tpu-v5e-16, tpu-v6e-16)" in capsys.readouterr().err
    with pytest.raises(UserError, match="1 or more"):
        JobOptions("l4", "gs://my-bucket/jobs", replicas=0)
