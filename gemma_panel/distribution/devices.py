"""What this machine trains on: backend, device kind and count, memory, hosts, bfloat16.

``describe_devices()`` is read once per run: its ``summary()`` opens every run's log, its
``lines()`` are what ``gemma-panel devices`` prints, and ``resolve`` (distribution.py) uses
the memory per device to choose a strategy.

Example:
    >>> report = describe_devices()
    >>> report.summary()
    'devices: 1 x cpu (cpu backend), memory not reported, 1 host; bfloat16 slow: ...'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.errors import UserError

# NVIDIA GPUs from Ampere (compute capability 8.0: A100, RTX 30xx) on have bfloat16 tensor
# cores; Volta and Turing (7.x) emulate bfloat16 at float32 speed or slower.
_GPU_BF16_MAJOR = 8
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# XLA's CPU backend (jaxlib 0.10) runs a bf16 x bf16 -> bf16 matmul, as Keras's bfloat16 and
# mixed_bfloat16 layers ask for it, as a float32 one; only bf16 inputs with float32
# accumulation reach AMX (4.3x float32 measured on an AMX Xeon), and XLA_FLAGS'
# --xla_cpu_use_onednn=true changes neither (docs/benchmarks.md, "bfloat16 on an AMX CPU").


@dataclass(frozen=True)
class DeviceReport:
    """The accelerators JAX sees, as one process of a (possibly multi-host) job sees them.

    Attributes:
        backend: ``cpu``, ``gpu`` or ``tpu``.
        device_kind: what the chips are, e.g. ``TPU v5 lite``, ``NVIDIA H100 80GB HBM3``.
        count: devices across all hosts; ``local_count``: on this host.
        memory_per_device: bytes one device can hold, or None where JAX does not say (CPU).
        hosts: processes in the job (one per host on TPU VMs); ``process_index``: this one.
        bf16_fast: whether bfloat16 math runs faster than float32 here; ``bf16_reason`` says
            why, in words.
    """

    backend: str
    device_kind: str
    count: int
    local_count: int
    memory_per_device: int | None
    hosts: int
    process_index: int
    bf16_fast: bool
    bf16_reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line for the top of a run's log."""
        memory = (f"{_gib(self.memory_per_device)} each" if self.memory_per_device
                  else "memory not reported")
        hosts = "1 host" if self.hosts == 1 else f"{self.hosts} hosts"
        speed = "fast" if self.bf16_fast else "slow"
        return (f"devices: {self.count} x {self.device_kind} ({self.backend} backend), "
                f"{memory}, {hosts}; bfloat16 {speed}: {self.bf16_reason}")

    def lines(self) -> list[str]:
        """What ``gemma-panel devices`` prints, one fact per line."""
        memory = _gib(self.memory_per_device) if self.memory_per_device else "not reported"
        return [
            f"backend:            {self.backend}",
            f"device kind:        {self.device_kind}",
            f"devices:            {self.count} ({self.local_count} on this host)",
            f"memory per device:  {memory}",
            f"hosts:              {self.hosts} (this is process {self.process_index})",
            f"bfloat16 fast:      {'yes' if self.bf16_fast else 'no'} ({self.bf16_reason})",
        ]


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def device_memory(device) -> int | None:
    """Bytes the device can hold, from ``memory_stats()``; None where JAX does not report it."""
    try:
        stats = device.memory_stats()
    except (RuntimeError, NotImplementedError, AttributeError):  # plugins that do not say
        return None
    return int(stats["bytes_limit"]) if stats and stats.get("bytes_limit") else None


def cpu_bf16_flags(cpuinfo: str) -> set[str]:
    """The bfloat16 instruction sets named in /proc/cpuinfo text."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return flags & set(_CPU_BF16_FLAGS)


def bf16_speed(backend: str, device, cpuinfo: str | None = None) -> tuple[bool, str]:
    """(whether bfloat16 is faster than float32 here, why) for one device."""
    if backend == "tpu":
        return True, "TPUs compute in bfloat16 natively"
    if backend == "gpu":
        capability = getattr(device, "compute_capability", None)
        if capability is None:
            return False, "the GPU does not report its compute capability"
        major = int(str(capability).split(".")[0])
        if major >= _GPU_BF16_MAJOR:
            return True, f"compute capability {capability} has bfloat16 tensor cores"
        return False, f"compute capability {capability} has no bfloat16 tensor cores (8.0+)"
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    flags = cpu_bf16_flags(cpuinfo)
    if not flags:
        return False, "this CPU has no AMX-BF16 or AVX512-BF16 instructions"
    names = "/".join(sorted(flags))
    return False, (f"the CPU has {names}, but XLA computes the bfloat16 layers' matmuls "
                   "in float32 (no faster)")


def describe_devices(devices=None) -> DeviceReport:
    """The devices JAX sees (all of them, or the list given)."""
    import jax

    devices = list(devices) if devices is not None else jax.devices()
    local = [d for d in devices if d.process_index == jax.process_index()]
    first = (local or devices)[0]  # only this host's devices answer memory_stats()
    fast, reason = bf16_speed(first.platform, first)
    return DeviceReport(
        backend=first.platform,
        device_kind=first.device_kind,
        count=len(devices),
        local_count=len(local),
        memory_per_device=device_memory(first),
        hosts=jax.process_count(),
        process_index=jax.process_index(),
        bf16_fast=fast,
        bf16_reason=reason,
    )


def probe_devices(timeout: float = 120.0) -> DeviceReport:
    """`describe_devices` in a child process, for a process that must not start JAX itself
    (the dashboard: a TPU is held by one process at a time, and JAX's start-up memory would
    stay in the server).

    Raises:
        DeviceProbeError: the child failed (e.g. a running run holds the accelerator).
    """
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "gemma_panel", "devices", "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise DeviceProbeError(f"the device check took over {timeout:.0f} s; run "
                               "'gemma-panel devices' in a terminal to see why") from exc
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["it failed"])[-1]
        raise DeviceProbeError(f"the devices could not be checked ({why}); a running run "
                               "may hold the accelerator: try again when it ends")
    return DeviceReport(**json.loads(done.stdout))


class DeviceProbeError(UserError, RuntimeError):
    """The child process that lists the devices failed; the message says what to do."""
