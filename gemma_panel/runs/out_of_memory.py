"""A run that dies of memory exhaustion ends ``failed: out of memory``, with the plan's remedies.

Three ways a training process runs out of memory, and how each is recognised:

* Python's allocator fails: ``MemoryError``, caught by the worker;
* XLA cannot allocate on a device: ``jax.errors.JaxRuntimeError`` (formerly
  ``XlaRuntimeError``) whose message says ``RESOURCE_EXHAUSTED``, caught by the worker;
* the kernel's OOM killer ends the worker with SIGKILL: nothing in the process can catch
  that, so the worker records the kernel's OOM-kill counters when it starts training
  (``oom-baseline.json`` in the run folder, with the devices it trains on), and whoever
  finds the worker gone (``RunStore.mark_lost``) compares: **a worker that vanished while an
  OOM-kill counter it could read rose was killed by the OOM killer**; only then are the
  remedies worked out, from the run folder's ``recipe.yaml`` and the recorded devices (they
  cost a second of hashing a GGUF source: no run pays that at its start). The counters: the worker's memory cgroup (v2 ``memory.events``, v1
  ``memory.oom_control``), else the whole system's (``/proc/vmstat``). Another process
  killed in the same cgroup meanwhile would be blamed on the run too; a vanished worker
  whose counters did not move stays ``lost``; only the worker's own host compares.
"""

from __future__ import annotations

import json
from pathlib import Path

from .statuses import OUT_OF_MEMORY

BASELINE_NAME = "oom-baseline.json"
CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_REMEDIES = 4
FALLBACK_REMEDIES = [("lower train.batch_size and raise train.gradient_accumulation by the "
                      "same factor"), "lower data.sequence_length", "set memory.remat: true"]


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or XLA's RESOURCE_EXHAUSTED (any exception saying so, e.g. wrapped)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory while trying to allocate" in text


def message(cause: str, remedies: list[str]) -> str:
    """``out of memory (cause): remedies; then resume``, the words the run's status shows."""
    steps = "; ".join(f"{i}) {r}" for i, r in enumerate(remedies[:MAX_REMEDIES], 1))
    return (f"{OUT_OF_MEMORY} ({cause}). What would fit, cheapest in quality first: {steps}. "
            "Change the recipe and start a new run")


def remedies_for(recipe, hardware=None) -> list[str]:
    """The plan's remedies (``planning.memory.out_of_memory_remedies``) for this recipe on
    ``hardware`` (default: this machine's devices, as JAX sees them: call it in a worker);
    the generic ones where the model's size or the devices cannot be told."""
    from gemma_panel.planning import memory
    from gemma_panel.planning.hardware import as_hardware
    from gemma_panel.planning.report import memory_estimates, strategy_in_use

    try:
        if hardware is None:
            from gemma_panel.distribution import describe_devices

            hardware = describe_devices()
        hw = as_hardware(hardware)
        model = memory.size_without_weights(recipe.model.source)
        if model is None:
            return FALLBACK_REMEDIES
        used = strategy_in_use(recipe, memory_estimates(recipe, hw, None, model))
        found = memory.out_of_memory_remedies(model, memory.training_shape(recipe), hw.backend,
                                              hw.memory_per_device, used.strategy, used.devices)
    except Exception:  # noqa: BLE001 - the failure is reported either way
        return FALLBACK_REMEDIES
    return found or FALLBACK_REMEDIES


# -- the kernel's OOM killer ---------------------------------------------------------------
def oom_kill_counts() -> dict[str, int]:
    """The OOM-kill counters of this process's memory cgroup (file -> kills so far), or
    where it has none readable, the whole system's."""
    files = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            files.append(CGROUP_ROOT / path.lstrip("/") / "memory.events")
        elif "memory" in controllers.split(","):
            files += [CGROUP_ROOT / "memory" / path.lstrip("/") / "memory.oom_control",
                      CGROUP_ROOT / "memory" / "memory.oom_control"]  # a namespaced mount
    counts = {str(f): n for f in dict.fromkeys(files) if (n := _oom_kill_in(f)) is not None}
    if not counts and (n := _oom_kill_in(Path("/proc/vmstat"))) is not None:
        counts["/proc/vmstat"] = n
    return counts


def _oom_kill_in(file: Path) -> int | None:
    try:
        text = file.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def record_baseline(run_dir, devices: dict | None = None) -> None:
    """The worker, as it starts: the counters now (kept if already recorded by this
    worker: ``devices``, a ``DeviceReport.to_dict()``, are added once JAX is up)."""
    path = Path(run_dir) / BASELINE_NAME
    counts = oom_kill_counts() if devices is None else _read(path).get("counts") or {}
    path.write_text(json.dumps({"counts": counts, "devices": devices}))


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class BaselineSink:
    """A sink for the worker: the OOM-kill counters when it is made, the devices once
    training has started (JAX is up by then: reading the devices earlier would start it
    before ``jax.distributed``, which must come first on several hosts)."""

    def __init__(self, run_dir, recipe):
        self.run_dir, self.recipe = run_dir, recipe
        record_baseline(run_dir)

    def on_start(self, info) -> None:
        from gemma_panel.distribution import describe_devices

        try:
            devices = describe_devices().to_dict()
        except Exception:  # noqa: BLE001 - no devices recorded: the remedies assume this CPU
            devices = {}
        record_baseline(self.run_dir, devices)

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def _remedies_after_kill(run_dir: Path, devices: dict | None) -> list[str]:
    """The plan's remedies for the run folder's recipe on the devices its worker recorded
    (this CPU where it died before recording them)."""
    from gemma_panel.config import load_recipe
    from gemma_panel.distribution.devices import DeviceReport
    from gemma_panel.planning.hardware import this_cpu

    try:
        recipe = load_recipe(run_dir / "recipe.yaml")
        hardware = DeviceReport(**devices) if devices else this_cpu()
    except Exception:  # noqa: BLE001 - the kill is reported either way
        return FALLBACK_REMEDIES
    return remedies_for(recipe, hardware)


def killed_by_oom(run_dir) -> str | None:
    """The run's status message if its vanished worker was killed by the OOM killer (an
    OOM-kill counter it recorded has risen since), else None."""
    baseline = _read(Path(run_dir) / BASELINE_NAME)
    now = oom_kill_counts()
    risen = [(f, n, now[f]) for f, n in baseline.get("counts", {}).items()
             if f in now and now[f] > n]
    if not risen:
        return None
    file, before, after = risen[0]
    cause = (f"the kernel's OOM killer ended the worker with SIGKILL: oom_kill in {file} "
             f"rose from {before} to {after}")
    return message(cause, _remedies_after_kill(Path(run_dir), baseline.get("devices")))
