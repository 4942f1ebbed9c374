"""The ``gcloud`` lines for training on a Cloud TPU VM, printed, never run.

A queued resource asks for the TPU (spot or on-demand) and creates the VM when capacity is
there; then the package is installed, the recipe copied over, the dashboard served on
worker 0 bound to localhost and reached through an SSH tunnel, and the run started.

A multi-host slice (``tpu-v5e-16``: four VMs of four chips) is one JAX job over every
VM: the package and the recipe go to every worker (``--worker=all``) and every worker
starts the same run, with ``GEMMA_PANEL_TPU_HOSTS`` saying how many hosts to wait for
(distribution/multihost.py joins them with ``jax.distributed.initialize()``). Only worker
0 (process 0) writes the run store, checkpoints and logs, so the dashboard runs there.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from gemma_panel.errors import UserError

# --accelerator -> (TPU accelerator type, TPU VM software version, hosts). Slices of more
# than 8 chips have 4 chips a host (Google's v5e and v6e documentation).
TPU_VMS = {
    "tpu-v5e-1": ("v5litepod-1", "v2-alpha-tpuv5-lite", 1),
    "tpu-v5e-4": ("v5litepod-4", "v2-alpha-tpuv5-lite", 1),
    "tpu-v5e-8": ("v5litepod-8", "v2-alpha-tpuv5-lite", 1),
    "tpu-v5e-16": ("v5litepod-16", "v2-alpha-tpuv5-lite", 4),
    "tpu-v5e-32": ("v5litepod-32", "v2-alpha-tpuv5-lite", 8),
    "tpu-v6e-1": ("v6e-1", "v2-alpha-tpuv6e", 1),
    "tpu-v6e-4": ("v6e-4", "v2-alpha-tpuv6e", 1),
    "tpu-v6e-8": ("v6e-8", "v2-alpha-tpuv6e", 1),
    "tpu-v6e-16": ("v6e-16", "v2-alpha-tpuv6e", 4),
    "tpu-v6e-32": ("v6e-32", "v2-alpha-tpuv6e", 8),
}
DEFAULT_PACKAGE = "gemma-panel[tpu,cloud]"
# TPU VM images ship an older Python than the package needs (3.11+): it gets its own.
VENV = "~/gemma-panel-env"
PYTHON_SETUP = ("sudo apt-get update -qq && sudo apt-get install -y -qq python3.11 "
                f"python3.11-venv && python3.11 -m venv {VENV}")


@dataclass(frozen=True)
class TpuVm:
    """Where and what: the VM's name, zone, project, slice, spot or not, the recipe."""

    name: str
    zone: str
    accelerator: str
    project: str | None = None
    spot: bool = False
    recipe: str = "recipe.yaml"
    package: str = DEFAULT_PACKAGE
    port: int = 5006


def _where(vm: TpuVm) -> list[str]:
    return ["--zone", vm.zone] + (["--project", vm.project] if vm.project else [])


def _ssh(vm: TpuVm, command: str, worker: str = "0") -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", vm.name, *_where(vm),
            f"--worker={worker}", "--command", command]


def hosts(accelerator: str) -> int:
    """The VMs of a slice (1 for the single-host ones)."""
    if accelerator not in TPU_VMS:
        raise UserError(f"unknown TPU VM slice {accelerator!r}: use one of "
                        f"{', '.join(TPU_VMS)}.")
    return TPU_VMS[accelerator][2]


def gcloud_lines(vm: TpuVm) -> list[tuple[str, list[str]]]:
    """(what it does, argv) for each step, in order."""
    many = hosts(vm.accelerator) > 1
    kind, version, count = TPU_VMS[vm.accelerator]
    every = "all" if many else "0"  # the workers that install, get the recipe and train
    queued = f"{vm.name}-qr"
    recipe = vm.recipe.rsplit("/", 1)[-1]  # in the home folder there (where ssh starts)
    tool = f"{VENV}/bin/gemma-panel"
    serve = (f"nohup {tool} dashboard --address 127.0.0.1 --port {vm.port} "
             "> ~/dashboard.log 2>&1 &")
    start = f"{tool} run {recipe} --detach"
    if many:  # every worker joins one JAX job of `count` processes
        start = f"GEMMA_PANEL_TPU_HOSTS={count} {start}"
    return [
        ("ask for the TPU; the VM is created when capacity is there",
         ["gcloud", "compute", "tpus", "queued-resources", "create", queued,
          "--node-id", vm.name, *_where(vm), "--accelerator-type", kind,
          "--runtime-version", version, *(["--spot"] if vm.spot else [])]),
        ("wait until its state is ACTIVE",
         ["gcloud", "compute", "tpus", "queued-resources", "describe", queued, *_where(vm),
          "--format=value(state.state)"]),
        ("install Python 3.11 and gemma-panel with JAX for TPU"
         + (f" on each of the {count} workers" if many else ""),
         _ssh(vm, f'{PYTHON_SETUP} && {VENV}/bin/pip install "{vm.package}"', every)),
        ("copy the recipe over" + (" to every worker" if many else ""),
         ["gcloud", "compute", "tpus", "tpu-vm", "scp", vm.recipe, f"{vm.name}:{recipe}",
          *_where(vm), f"--worker={every}"]),
        ("serve the dashboard on worker 0, bound to localhost only", _ssh(vm, serve)),
        (f"reach it from here at http://localhost:{vm.port} (keep this running)",
         ["gcloud", "compute", "tpus", "tpu-vm", "ssh", vm.name, *_where(vm), "--worker=0",
          "--", "-N", "-L", f"{vm.port}:localhost:{vm.port}"]),
        ("start the run (it shows in the dashboard)" if not many else
         f"start the run on all {count} workers at once: one JAX job over the slice (worker "
         "0 writes the run store; the dashboard shows it)", _ssh(vm, start, every)),
        ("when done: delete the TPU (billing stops)",
         ["gcloud", "compute", "tpus", "queued-resources", "delete", queued, *_where(vm),
          "--force", "--quiet"]),
    ]


def script(vm: TpuVm) -> str:
    """The lines as a commented shell script."""
    out = []
    for what, argv in gcloud_lines(vm):
        out += [f"# {what}", shlex.join(argv)]
    return "\n".join(out) + "\n"
