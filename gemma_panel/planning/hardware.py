"""The hardware a plan is made for: this machine's devices, or a named cloud accelerator.

A `Hardware` is what the estimates need: the kind of device, how many, the memory of each,
the peak matrix throughput and whether bfloat16 is fast. ``hardware_from_report`` reads a
`DeviceReport` (``describe_devices()``); ``named_hardware("tpu-v5e:8")`` is a published
profile, for planning a cloud run from a laptop.

Peaks are dense bfloat16 matmul FLOP/s from the vendors' pages (TPU: the Cloud TPU system
architecture pages; NVIDIA: the datasheets, sparsity excluded).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.errors import UserError


class HardwareError(UserError, ValueError):
    """A hardware name that is not a known profile."""


@dataclass(frozen=True)
class Hardware:
    """Devices as the estimates see them.

    Args:
        name: the profile name (``tpu-v5e``) or ``this machine``.
        backend: ``cpu``, ``gpu`` or ``tpu``.
        count: devices the run can use.
        memory_per_device: bytes one device holds (CPU: the host's RAM); None: unknown.
        peak_flops: dense matmul FLOP/s of one device in its fast precision; None: measure.
        peak_source: where the peak comes from, in words.
        bf16_fast: whether bfloat16 computes faster than float32 here.
        price_key: the row of the price table (prices.yaml) for this device, if any.
    """

    name: str
    backend: str
    count: int
    memory_per_device: int | None
    peak_flops: float | None
    peak_source: str
    bf16_fast: bool
    price_key: str | None = None

    def with_count(self, count: int) -> Hardware:
        return dataclasses.replace(self, count=count)

    def describe(self) -> str:
        memory = f"{self.memory_per_device / 2**30:.0f} GiB" if self.memory_per_device \
            else "memory unknown"
        return f"{self.count} x {self.name} ({self.backend}, {memory} each)"


_GB = 10**9
_NVIDIA = "NVIDIA datasheet, dense bfloat16"
PROFILES: dict[str, Hardware] = {p.name: p for p in [
    Hardware("tpu-v5e", "tpu", 1, 16 * _GB, 197e12,
             "Cloud TPU v5e page: 197 TFLOP/s bf16 per chip", True, "tpu-v5e"),
    Hardware("tpu-v6e", "tpu", 1, 32 * _GB, 918e12,
             "Cloud TPU v6e page: 918 TFLOP/s bf16 per chip", True, "tpu-v6e"),
    Hardware("tpu-v5p", "tpu", 1, 95 * _GB, 459e12,
             "Cloud TPU v5p page: 459 TFLOP/s bf16 per chip", True, "tpu-v5p"),
    Hardware("l4", "gpu", 1, 24 * _GB, 121e12, f"{_NVIDIA}: 121 TFLOP/s", True, "l4"),
    Hardware("a100-40gb", "gpu", 1, 40 * _GB, 312e12, f"{_NVIDIA}: 312 TFLOP/s", True,
             "a100-40gb"),
    Hardware("a100-80gb", "gpu", 1, 80 * _GB, 312e12, f"{_NVIDIA}: 312 TFLOP/s", True,
             "a100-80gb"),
    Hardware("h100", "gpu", 1, 80 * _GB, 989e12, f"{_NVIDIA} (SXM): 989 TFLOP/s", True,
             "h100"),
]}


def named_hardware(text: str) -> Hardware:
    """A profile by name, with an optional device count: ``h100``, ``tpu-v5e:8``.

    Raises:
        HardwareError: an unknown name or a count that is not a whole number.
    """
    name, _, count = text.strip().lower().partition(":")
    if name not in PROFILES:
        raise HardwareError(f"--hardware: unknown hardware {text!r}; choose one of "
                            f"{', '.join(PROFILES)}, optionally with a count (tpu-v5e:8)")
    if count and not (count.isdigit() and int(count) >= 1):
        raise HardwareError(f"--hardware: the count after ':' must be a whole number, got "
                            f"{count!r} (e.g. tpu-v5e:8)")
    return PROFILES[name].with_count(int(count or 1))


def host_memory() -> int | None:
    """This host's RAM in bytes (MemTotal), or None where /proc/meminfo is absent."""
    path = Path("/proc/meminfo")
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def hardware_from_report(report, peak_flops: float | None = None) -> Hardware:
    """The `Hardware` of a `DeviceReport`; a CPU's memory is the host's RAM.

    ``peak_flops`` (a measured figure, see ``time.measured_peak``) replaces the published
    one; a known accelerator kind takes its profile's peak and price row.
    """
    profile = _profile_of_kind(report.device_kind)
    memory = report.memory_per_device
    if memory is None and report.backend == "cpu":
        memory = host_memory()
    peak = peak_flops or (profile.peak_flops if profile else None)
    source = ("measured matmul on this machine" if peak_flops else
              profile.peak_source if profile else "unknown: measure it with --calibrate")
    return Hardware(f"this machine ({report.device_kind})", report.backend, report.count,
                    memory, peak, source, report.bf16_fast,
                    profile.price_key if profile else None)


_KINDS = {"tpu v5 lite": "tpu-v5e", "tpu v5e": "tpu-v5e", "tpu v6": "tpu-v6e",
          "tpu v5p": "tpu-v5p", "tpu v5": "tpu-v5p", "l4": "l4", "h100": "h100",
          "a100-sxm4-80gb": "a100-80gb", "a100 80gb": "a100-80gb", "a100": "a100-40gb"}


def _profile_of_kind(kind: str) -> Hardware | None:
    text = kind.lower()
    for needle, name in _KINDS.items():  # ordered: the more specific names first
        if needle in text:
            return PROFILES[name]
    return None


def this_cpu(peak_flops: float | None = None) -> Hardware:
    """This host's CPU without asking JAX (no accelerator assumed)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    return Hardware(f"this machine's CPU ({cores} cores)", "cpu", 1, host_memory(),
                    peak_flops, "measured matmul on this machine" if peak_flops else
                    "not measured yet", False)


def as_hardware(hardware) -> Hardware:
    """A `Hardware` from a `Hardware`, a `DeviceReport`, a profile name, or None (this CPU)."""
    if hardware is None:
        return this_cpu()
    if isinstance(hardware, Hardware):
        return hardware
    if isinstance(hardware, str):
        return named_hardware(hardware)
    return hardware_from_report(hardware)
