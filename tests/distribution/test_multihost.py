"""Multi-host: which cluster each source describes, and a real 2-process join on one machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from gemma_panel.distribution.multihost import (
    Cluster,
    MultihostError,
    detect,
    from_cluster_spec,
    from_env,
    on_tpu_slice,
)

NO_TPU = ()  # device files: none present

SPEC = {
    "cluster": {"workerpool0": ["cmle-training-workerpool0-ab-0:2222"],
                "workerpool1": ["cmle-training-workerpool1-ab-0:2222",
                                "cmle-training-workerpool1-ab-1:2222"],
                "workerpool2": ["cmle-training-workerpool2-ab-0:2222"]},
    "environment": "cloud",
    "task": {"type": "workerpool1", "index": 1},
}


def test_explicit_variables():
    env = {"GEMMA_PANEL_COORDINATOR": "10.0.0.2:1234", "GEMMA_PANEL_NUM_PROCESSES": "4",
           "GEMMA_PANEL_PROCESS_ID": "3"}
    assert from_env(env) == Cluster("env", "10.0.0.2:1234", 4, 3)
    assert detect(env, NO_TPU) == Cluster("env", "10.0.0.2:1234", 4, 3)


@pytest.mark.parametrize("env, words", [
    ({"GEMMA_PANEL_COORDINATOR": "h:1"}, "GEMMA_PANEL_NUM_PROCESSES, GEMMA_PANEL_PROCESS_ID"),
    ({"GEMMA_PANEL_COORDINATOR": "h:1", "GEMMA_PANEL_NUM_PROCESSES": "2",
      "GEMMA_PANEL_PROCESS_ID": "2"}, "between 0 and"),
    ({"GEMMA_PANEL_COORDINATOR": "h", "GEMMA_PANEL_NUM_PROCESSES": "2",
      "GEMMA_PANEL_PROCESS_ID": "0"}, "needs a port"),
    ({"GEMMA_PANEL_COORDINATOR": "h:1", "GEMMA_PANEL_NUM_PROCESSES": "two",
      "GEMMA_PANEL_PROCESS_ID": "0"}, "whole number"),
])
def test_explicit_variables_refused_in_words(env, words):
    with pytest.raises(MultihostError, match=words):
        from_env(env)


def test_vertex_cluster_spec_counts_the_training_pools_only():
    """workerpool0 is process 0; workerpool1's replicas follow; workerpool2 (reduction
    server) runs no training process."""
    assert from_cluster_spec(json.dumps(SPEC)) == Cluster(
        "vertex", "cmle-training-workerpool0-ab-0:2222", 3, 2)
    primary = {**SPEC, "task": {"type": "workerpool0", "index": 0}}
    assert detect({"CLUSTER_SPEC": json.dumps(primary)}, NO_TPU).process_id == 0
    with pytest.raises(MultihostError, match="workerpool2"):
        from_cluster_spec(json.dumps({**SPEC, "task": {"type": "workerpool2", "index": 0}}))
    with pytest.raises(MultihostError, match="CLUSTER_SPEC"):
        from_cluster_spec('{"cluster": {}}')


def test_one_vertex_replica_is_a_single_host():
    one = {"cluster": {"workerpool0": ["h-0:2222"]}, "task": {"type": "workerpool0",
                                                             "index": 0}}
    assert detect({"CLUSTER_SPEC": json.dumps(one)}, NO_TPU) is None


def test_tpu_slice_detection(tmp_path):
    assert on_tpu_slice({"TPU_WORKER_HOSTNAMES": "t1k-w-0,t1k-w-1"}, NO_TPU)
    assert not on_tpu_slice({"TPU_WORKER_HOSTNAMES": "t1k-w-0"}, NO_TPU)
    accel = tmp_path / "accel0"
    accel.touch()
    assert detect({}, (str(accel),)) == Cluster("tpu")
    assert detect({}, NO_TPU) is None  # a laptop: nothing to join


def test_explicit_variables_win_over_the_others():
    env = {"GEMMA_PANEL_COORDINATOR": "a:1", "GEMMA_PANEL_NUM_PROCESSES": "2",
           "GEMMA_PANEL_PROCESS_ID": "1", "CLUSTER_SPEC": json.dumps(SPEC),
           "TPU_WORKER_HOSTNAMES": "x,y"}
    assert detect(env, NO_TPU).source == "env"


WORKER = textwrap.dedent("""
    from gemma_panel.distribution.multihost import initialize, is_primary
    cluster = initialize()
    import jax
    print("RESULT", cluster.source, jax.process_count(), jax.process_index(), is_primary(),
          len(jax.devices()), flush=True)
""")


def test_two_processes_join_on_this_machine():
    """A real jax.distributed.initialize of 2 CPU processes through the GEMMA_PANEL_*
    variables: each sees both processes' devices, and only process 0 is primary."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for index in range(2):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "GEMMA_PANEL_NUM_PROCESSES": "2",
               "GEMMA_PANEL_COORDINATOR": f"127.0.0.1:{port}",
               "GEMMA_PANEL_PROCESS_ID": str(index)}
        env.pop("CLUSTER_SPEC", None)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    lines = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-2000:]
        lines.append(next(line for line in out.splitlines() if line.startswith("RESULT")))
    assert lines == ["RESULT env 2 0 True 2", "RESULT env 2 1 False 2"]
