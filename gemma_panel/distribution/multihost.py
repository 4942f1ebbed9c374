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
   A multi-host slice (``GEMMA_PANEL_TPU_HOSTS`` >= 2, which a Vertex AI job on a slice
   sets, or two or more ``TPU_WORKER_HOSTNAMES``) comes before ``CLUSTER_SPEC``: Vertex AI
   runs a slice as one replica, and each of its VMs joining a "cluster" of itself alone
   would train the whole run on its own.

Anywhere else (a laptop, one GPU machine, one Vertex replica) it does nothing. Only
``is_primary()`` (process 0) writes the run store, checkpoints and logs.

Once joined, the trainer keeps the processes in step with the collectives below: every
process calls each of them at the same point, or all of them wait.

- ``agree``: process 0's decision (resume? stop now?) for everyone;
- ``feed_batch``: each process places only its own rows of the global batch;
- ``to_host``: the state gathered to every host as numpy (for a checkpoint, for the
  Keras model that generates samples), written by process 0 alone;
- ``share_checkpoint``: a checkpoint only process 0's disk holds, for everyone.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemma_panel.errors import UserError

ENV_COORDINATOR = "GEMMA_PANEL_COORDINATOR"
ENV_NUM_PROCESSES = "GEMMA_PANEL_NUM_PROCESSES"
ENV_PROCESS_ID = "GEMMA_PANEL_PROCESS_ID"
ENV_TPU_HOSTS = "GEMMA_PANEL_TPU_HOSTS"  # the hosts of this TPU slice (a Vertex AI job's)
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


def tpu_hosts(environ: Mapping[str, str]) -> int:
    """The hosts of this TPU slice as the environment says (0: it does not say)."""
    if environ.get(ENV_TPU_HOSTS):
        return _whole(ENV_TPU_HOSTS, environ[ENV_TPU_HOSTS])
    return len([h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()])


def on_tpu_slice(environ: Mapping[str, str], device_files=TPU_DEVICE_FILES) -> bool:
    return tpu_hosts(environ) > 1 or any(Path(f).exists() for f in device_files)


def detect(environ: Mapping[str, str] | None = None,
           device_files=TPU_DEVICE_FILES) -> Cluster | None:
    """This process's cluster, from the first source that describes one; None on one host."""
    environ = os.environ if environ is None else environ
    cluster = from_env(environ)
    if cluster is None and tpu_hosts(environ) > 1:  # a slice, whatever CLUSTER_SPEC says
        return Cluster("tpu", num_processes=tpu_hosts(environ))
    cluster = cluster or from_cluster_spec(environ.get("CLUSTER_SPEC"))
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
    if cluster.num_processes is not None and jax.process_count() != cluster.num_processes:
        raise MultihostError(f"this {cluster.source} cluster has {cluster.num_processes} "
                             f"hosts but JAX joined {jax.process_count()} processes; check "
                             "that every host runs the same command and can reach process "
                             "0 (its coordinator port open between the hosts).")
    _joined = cluster
    return cluster


def is_primary() -> bool:
    """Whether this process writes the run store, checkpoints and logs (process 0)."""
    if _joined is None:
        return True
    import jax

    return jax.process_index() == 0


def process_count() -> int:
    """How many processes share this run (1 unless ``initialize`` joined a cluster)."""
    if _joined is None:
        return 1
    import jax

    return jax.process_count()


def agree(value: int | bool) -> int:
    """Process 0's ``value`` on every process (a small integer or a flag)."""
    if process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int64(value)))


def broadcast_from_primary(tree, like):
    """Process 0's numpy ``tree`` on every process; the others pass None and ``like`` (a
    tree of the same shapes and dtypes) says what they receive."""
    if process_count() == 1:
        return tree
    import jax
    from jax.experimental import multihost_utils

    if not is_primary():
        tree = jax.tree.map(lambda x: np.zeros(np.shape(x), x.dtype), like)
    return multihost_utils.broadcast_one_to_all(tree)


def broadcast_json(value):
    """Process 0's JSON-able ``value`` on every process (the others pass anything)."""
    if process_count() == 1:
        return value
    data = np.frombuffer(json.dumps(value).encode(), np.uint8) if is_primary() \
        else np.zeros(0, np.uint8)
    size = agree(len(data))
    data = broadcast_from_primary(data, np.zeros(size, np.uint8))
    return json.loads(bytes(data).decode())


def share_checkpoint(state, meta: dict | None, like):
    """Process 0's checkpoint (``state``, ``meta``; None on the others) on every process,
    as arrays of this process; ``like`` is this process's state of the same structure."""
    if process_count() == 1:
        return state, meta
    import jax

    shared = broadcast_from_primary(None if state is None else to_host(tuple(state)), like)
    return jax.tree.map(jax.numpy.asarray, shared), broadcast_json(meta)


def to_host(tree):
    """Every leaf's whole value as numpy, on every process; a collective when the leaves
    span several processes (each process must call it at the same point)."""
    import jax
    from jax.experimental import multihost_utils

    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return multihost_utils.process_allgather(leaf, tiled=True)
        return np.asarray(leaf)

    return jax.tree.map(one, tree)


def addressable(tree):
    """``tree`` as arrays this process can use alone (Keras generation, export): itself on
    one process, gathered to the host (``to_host``) when it spans several."""
    return tree if process_count() == 1 else to_host(tree)


def local_rows(sharding, shape: tuple) -> slice:
    """The rows (axis 1 of an (accumulation, batch, length) batch) that this process's
    devices hold under ``sharding``; contiguous when the mesh lists devices by process."""
    spans = {(index[1].start or 0, shape[1] if index[1].stop is None else index[1].stop)
             for index in sharding.addressable_devices_indices_map(shape).values()}
    spans = sorted(spans)
    if any(a != b for (_, b), (a, _) in itertools.pairwise(spans)):
        raise ValueError(f"this process's rows {spans} are not one block")
    return slice(spans[0][0], spans[-1][1])


def feed_batch(shardings, arrays):
    """A train batch on the mesh, each process giving only the rows its devices hold.

    ``arrays`` are the global batch's (accumulation, batch, length) arrays; on one process
    they are placed whole (``StepShardings.place_batch``).
    """
    if process_count() == 1:
        return shardings.place_batch(arrays)
    import jax

    sharding = shardings.batch
    rows = local_rows(sharding, arrays[0].shape)
    return tuple(jax.make_array_from_process_local_data(sharding, a[:, rows], a.shape)
                 for a in arrays)
