"""Run one script as N JAX processes of one cluster on this machine (127.0.0.1).

Each process gets the GEMMA_PANEL_* variables that ``multihost.initialize`` joins by, and
``devices`` host CPU devices of its own; the CPU backend's collectives between processes
are gloo's (jaxlib's default, ``jax_cpu_collectives_implementation``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile

from tests.distribution.host_devices import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(devices: int, cluster: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GEMMA_PANEL_") and k not in ("CLUSTER_SPEC",
                                                            "TPU_WORKER_HOSTNAMES")}
    env.update(JAX_PLATFORMS="cpu", **(cluster or {}))
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}").strip()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_processes(module: str, args_of, processes: int = 2, devices: int = 1,
                  timeout: int = 300) -> list[dict]:
    """``python -m module *args_of(index)`` as process 0..N-1 of one cluster; each one's
    last stdout line, parsed (in process order)."""
    port = free_port()
    with contextlib.ExitStack() as files:
        # files, not pipes: a process blocked on a full pipe would never reach the
        # shutdown barrier the others wait at
        outputs = [(files.enter_context(tempfile.TemporaryFile("w+")),
                    files.enter_context(tempfile.TemporaryFile("w+"))) for _ in range(processes)]
        procs = []
        for index, (out, err) in enumerate(outputs):
            cluster = {"GEMMA_PANEL_COORDINATOR": f"127.0.0.1:{port}",
                       "GEMMA_PANEL_NUM_PROCESSES": str(processes),
                       "GEMMA_PANEL_PROCESS_ID": str(index)}
            procs.append(subprocess.Popen(
                [sys.executable, "-m", module, *args_of(index)], cwd=ROOT,
                env=child_env(devices, cluster), text=True, stdout=out, stderr=err))
        try:
            codes = [proc.wait(timeout=timeout) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        texts = []
        for out, err in outputs:
            out.seek(0)
            err.seek(0)
            texts.append((out.read(), err.read()))
    failed = [f"process {i} exited {rc}:\n{_tail(err)}"
              for i, (rc, (_, err)) in enumerate(zip(codes, texts)) if rc != 0]
    assert not failed, "\n".join(failed)
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in texts]


def _tail(err: str, lines: int = 40) -> str:
    """The end of a child's stderr without the tokenizer's and XLA's start-up chatter."""
    kept = [line for line in err.splitlines()
            if "normalizer.cc" not in line and not line.startswith(("I0000", "WARNING: All"))]
    return "\n".join(kept[-lines:])


def run_single(module: str, args, devices: int = 1, timeout: int = 300) -> dict:
    """The same script as one process of no cluster."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          env=child_env(devices), capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
