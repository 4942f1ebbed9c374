"""Several hosts, one run: ``jax.distributed.initialize`` from what the host says about itself.

Every host of a multi-host run runs the same command; before JAX first touches a device,
``initialize()`` finds out which cluster it is part of and joins it, after which
``jax.devices()`` lists every host's devices and the run's mesh spans them all. Where it
looks, in order:

1. explicit variables, for any cluster: ``GEMMA_PANEL_COORDINATOR`` (host:port of process
   0), ``GEMMA_PANEL_NUM_PROCESSES`` and ``GEMMA_PANEL_PROCESS_ID`` (0 .. N-1);
2. Vertex AI's ``CLUSTER_SPEC`` (GPU worker pools): the primary replica (``workerpool0``)
   is process 0 and coordinator, ``workerpool1``'s replicas follow in order; the reduction
   server and evaluator pools (``workerpool2``, ``workerpool3``) run no training process;
3. a Cloud TPU VM slice: ``TPU_WORKER_HOSTNAMES`` lists two or more hosts, or a TPU device
   is present (``/dev/accel0``, ``/dev/vfio/0``); JAX then reads the slice's workers from
   the VM's metadata itself (``jax.distributed.initialize()`` without arguments).

Anywhere else (a laptop, one GPU machine, one Vertex replica) it does nothing. Only
``is_primary()`` (process 0) writes the run store, checkpoints and logs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.errors import UserError

ENV_COORDINATOR = "GEMMA_PANEL_COORDINATOR"
ENV_NUM_PROCESSES = "GEMMA_PANEL_NUM_PROCESSES"
ENV_PROCESS_ID = "GEMMA_PANEL_PROCESS_ID"
TPU_DEVICE_FILES = ("/dev/accel0", "/dev/vfio/0")
TRAINING_POOLS = ("workerpool0", "workerpool1")  # Vertex's primary and worker pools


class MultihostError(UserError, ValueError):
    """Cluster settings that cannot describe this process, said with what to set."""


@dataclass(frozen=True)
class Cluster:
    """Where this process sits: ``source`` is env, vertex or tpu. For tpu the other fields
    are None: JAX reads them from the TPU VM's metadata."""

    source: str
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def _whole(name: str, text) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise MultihostError(f"{name} must be a whole number, got {text!r}") from None


def from_env(environ: Mapping[str, str]) -> Cluster | None:
    """The cluster the GEMMA_PANEL_* variables describe (None when none is set)."""
    names = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
    given = [n for n in names if environ.get(n)]
    if not given:
        return None
    if len(given) < len(names):
        missing = ", ".join(n for n in names if n not in given)
        raise MultihostError(f"{', '.join(given)} is set but {missing} is not; set all three "
                             "on every host (or none on a single host).")
    count = _whole(ENV_NUM_PROCESSES, environ[ENV_NUM_PROCESSES])
    index = _whole(ENV_PROCESS_ID, environ[ENV_PROCESS_ID])
    if count < 1 or not 0 <= index < count:
        raise MultihostError(f"{ENV_PROCESS_ID}={index} must be between 0 and "
                             f"{ENV_NUM_PROCESSES}-1 = {count - 1}.")
    coordinator = environ[ENV_COORDINATOR].strip()
    if ":" not in coordinator:
        raise MultihostError(f"{ENV_COORDINATOR}={coordinator!r} needs a port: host:port of "
                             "process 0, e.g. 10.0.0.2:1234.")
    return Cluster("env", coordinator, count, index)


def from_cluster_spec(text: str | None) -> Cluster | None:
    """The cluster of Vertex AI's ``CLUSTER_SPEC`` JSON (None when unset)."""
    if not text:
        return None
    try:
        spec = json.loads(text)
        pools, task = spec["cluster"], spec["task"]
        kind, index = task["type"], int(task["index"])
        primary = pools["workerpool0"][0]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise MultihostError(f"CLUSTER_SPEC is not Vertex AI's cluster JSON ({exc!r}); unset "
                             "it, or set the GEMMA_PANEL_* variables instead.") from None
    if kind not in TRAINING_POOLS:
        raise MultihostError(f"this replica is in {kind}, which runs no training process; "
                             "give gemma-panel only workerpool0 and workerpool1.")
    sizes = [len(pools.get(pool, [])) for pool in TRAINING_POOLS]
    process_id = index if kind == "workerpool0" else sizes[0] + index
    return Cluster("vertex", primary, sum(sizes), process_id)


def on_tpu_slice(environ: Mapping[str, str], device_files=TPU_DEVICE_FILES) -> bool:
    hosts = [h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    return len(hosts) > 1 or any(Path(f).exists() for f in device_files)


def detect(environ: Mapping[str, str] | None = None,
           device_files=TPU_DEVICE_FILES) -> Cluster | None:
    """This process's cluster, from the first source that describes one; None on one host."""
    environ = os.environ if environ is None else environ
    cluster = from_env(environ) or from_cluster_spec(environ.get("CLUSTER_SPEC"))
    if cluster is None and on_tpu_slice(environ, device_files):
        cluster = Cluster("tpu")
    if cluster is not None and cluster.num_processes == 1:
        return None
    return cluster


_joined: Cluster | None = None


def initialize(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """Join this host's cluster (once; before any JAX computation). None: a single host."""
    global _joined
    if _joined is not None:
        return _joined
    cluster = detect(environ)
    if cluster is None:
        return None
    import jax

    jax.distributed.initialize(coordinator_address=cluster.coordinator,
                               num_processes=cluster.num_processes,
                               process_id=cluster.process_id)
    _joined = cluster
    return cluster


def is_primary() -> bool:
    """Whether this process writes the run store, checkpoints and logs (process 0)."""
    if _joined is None:
        return True
    import jax

    return jax.process_index() == 0
