"""The printed Cloud TPU VM lines: each one a gcloud command a shell reads back as meant."""

from __future__ import annotations

import shlex

import pytest

from gemma_panel.cli import main
from gemma_panel.cloud.tpu import TpuVm, gcloud_lines
from gemma_panel.errors import UserError


def _commands(capsys, *args) -> list[list[str]]:
    assert main(["cloud", "tpu-vm", "my-tpu", "--zone", "us-central1-a", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [shlex.split(line) for line in lines if not line.startswith("#")]


def test_spot_queued_resource_then_tunnelled_dashboard_and_run(capsys):
    create, describe, install, copy, serve, tunnel, run, delete = _commands(
        capsys, "--spot", "--project", "p1", "--recipe", "recipes/quickstart.yaml")
    assert create == ["gcloud", "compute", "tpus", "queued-resources", "create", "my-tpu-qr",
                      "--node-id", "my-tpu", "--zone", "us-central1-a", "--project", "p1",
                      "--accelerator-type", "v5litepod-4", "--runtime-version",
                      "v2-alpha-tpuv5-lite", "--spot"]
    assert describe[:6] == ["gcloud", "compute", "tpus", "queued-resources", "describe",
                            "my-tpu-qr"]
    assert install[-1].endswith('bin/pip install "gemma-panel[tpu,cloud]"')
    assert copy[5:7] == ["recipes/quickstart.yaml", "my-tpu:quickstart.yaml"]
    assert "--address 127.0.0.1 --port 5006" in serve[-1]  # never bound to all interfaces
    assert tunnel[-4:] == ["--", "-N", "-L", "5006:localhost:5006"]
    assert run[-1] == "~/gemma-panel-env/bin/gemma-panel run quickstart.yaml --detach"
    assert all("--worker=0" in c for c in (install, copy, serve, tunnel, run))
    assert delete[4:6] == ["delete", "my-tpu-qr"]


def test_on_demand_v6e_has_no_spot_flag(capsys):
    create = _commands(capsys, "--accelerator", "tpu-v6e-8")[0]
    assert "--spot" not in create and "v6e-8" in create and "v2-alpha-tpuv6e" in create


def test_a_multi_host_slice_installs_and_trains_on_every_worker(capsys):
    """tpu-v5e-16 is four VMs: each gets the package and the recipe and starts the same run
    (one JAX job, GEMMA_PANEL_TPU_HOSTS=4); the dashboard and its tunnel stay on worker 0."""
    create, _, install, copy, serve, tunnel, run, _ = _commands(
        capsys, "--accelerator", "tpu-v5e-16", "--recipe", "quickstart.yaml")
    assert "v5litepod-16" in create
    assert all("--worker=all" in c for c in (install, copy, run))
    assert all("--worker=0" in c for c in (serve, tunnel))
    assert run[-1] == ("GEMMA_PANEL_TPU_HOSTS=4 ~/gemma-panel-env/bin/gemma-panel run "
                       "quickstart.yaml --detach")


def test_the_run_line_joins_as_many_hosts_as_multihost_expects():
    """What the printed line sets is what distribution/multihost.py reads back."""
    from gemma_panel.cloud.tpu import TPU_VMS
    from gemma_panel.distribution.multihost import tpu_hosts

    for name, (_, _, count) in TPU_VMS.items():
        run = gcloud_lines(TpuVm("t", "z", name))[6][1][-1]
        environ = dict(p.split("=", 1) for p in run.split() if p.startswith("GEMMA_PANEL_"))
        assert max(1, tpu_hosts(environ)) == count, name


def test_an_unknown_slice_is_refused_in_words():
    with pytest.raises(UserError, match="unknown TPU VM slice 'tpu-v5e-64': use one of"):
        gcloud_lines(TpuVm("t", "us-central1-a", "tpu-v5e-64"))
