"""The ``gcloud`` lines for training on a Cloud TPU VM, printed, never run.

A queued resource asks for the TPU (spot or on-demand) and creates the VM when capacity is
there; then the package is installed, the recipe copied over, the dashboard served on
worker 0 bound to localhost and reached through an SSH tunnel, and the run started.

Only single-host slices are offered (one worker): a multi-host slice needs every worker
to join one JAX job, which the run command does not do yet.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from gemma_panel.errors import UserError

# --accelerator -> (TPU accelerator type, TPU VM software version).
TPU_VMS = {
    "tpu-v5e-1": ("v5litepod-1", "v2-alpha-tpuv5-lite"),
    "tpu-v5e-4": ("v5litepod-4", "v2-alpha-tpuv5-lite"),
    "tpu-v5e-8": ("v5litepod-8", "v2-alpha-tpuv5-lite"),
    "tpu-v6e-1": ("v6e-1", "v2-alpha-tpuv6e"),
    "tpu-v6e-4": ("v6e-4", "v2-alpha-tpuv6e"),
    "tpu-v6e-8": ("v6e-8", "v2-alpha-tpuv6e"),
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


def _ssh(vm: TpuVm, command: str) -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", vm.name, *_where(vm),
            "--worker=0", "--command", command]


def gcloud_lines(vm: TpuVm) -> list[tuple[str, list[str]]]:
    """(what it does, argv) for each step, in order."""
    if vm.accelerator not in TPU_VMS:
        raise UserError(f"unknown TPU VM slice {vm.accelerator!r}: use one of "
                        f"{', '.join(TPU_VMS)} (single-host slices only, for now).")
    kind, version = TPU_VMS[vm.accelerator]
    queued = f"{vm.name}-qr"
    recipe = vm.recipe.rsplit("/", 1)[-1]  # in the home folder there (where ssh starts)
    tool = f"{VENV}/bin/gemma-panel"
    serve = (f"nohup {tool} dashboard --address 127.0.0.1 --port {vm.port} "
             "> ~/dashboard.log 2>&1 &")
    return [
        ("ask for the TPU; the VM is created when capacity is there",
         ["gcloud", "compute", "tpus", "queued-resources", "create", queued,
          "--node-id", vm.name, *_where(vm), "--accelerator-type", kind,
          "--runtime-version", version, *(["--spot"] if vm.spot else [])]),
        ("wait until its state is ACTIVE",
         ["gcloud", "compute", "tpus", "queued-resources", "describe", queued, *_where(vm),
          "--format=value(state.state)"]),
        ("install Python 3.11 and gemma-panel with JAX for TPU",
         _ssh(vm, f'{PYTHON_SETUP} && {VENV}/bin/pip install "{vm.package}"')),
        ("copy the recipe over",
         ["gcloud", "compute", "tpus", "tpu-vm", "scp", vm.recipe, f"{vm.name}:{recipe}",
          *_where(vm), "--worker=0"]),
        ("serve the dashboard on worker 0, bound to localhost only", _ssh(vm, serve)),
        (f"reach it from here at http://localhost:{vm.port} (keep this running)",
         ["gcloud", "compute", "tpus", "tpu-vm", "ssh", vm.name, *_where(vm), "--worker=0",
          "--", "-N", "-L", f"{vm.port}:localhost:{vm.port}"]),
        ("start the run (it shows in the dashboard)",
         _ssh(vm, f"{tool} run {recipe} --detach")),
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
