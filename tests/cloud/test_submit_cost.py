"""``cloud submit`` prints the planner's time and cost first, asks, and honours --max-cost.

The data are on gcp-storage-emulator; the real SDK's calls go to the loopback JobService
(tests/cloud/vertex_server.py), which records whether anything was submitted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gemma_panel.cli import main

ROOT = Path(__file__).parents[2]
RECIPE = ROOT / "recipes" / "quickstart.yaml"
DATA = ROOT / "examples" / "instruction" / "unit_conversions.jsonl"


@pytest.fixture
def job_args(gcs, vertex_api, tmp_path, monkeypatch, gemma_panel_home):
    """``cloud submit`` arguments for the quickstart recipe on the emulated bucket. Each test
    has its own home (its runs) but shares the session's model cache: the tokenizer the
    estimate reads is imported from the GGUF once, not once a test."""
    _, bucket = gcs
    bucket.blob("d/train.jsonl").upload_from_filename(str(DATA))
    (gemma_panel_home / "models").mkdir(exist_ok=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "models").symlink_to(gemma_panel_home / "models")
    monkeypatch.setenv("GEMMA_PANEL_HOME", str(tmp_path / "home"))
    return [str(RECIPE), f"data.train_path=gs://{bucket.name}/d/train.jsonl", "--project",
            "p1", "--output", f"gs://{bucket.name}/jobs", "--job-id", "j1"]


def _created(vertex_api) -> list:
    return [c for c in vertex_api.calls if c[0] == "POST" and c[1].endswith("/customJobs")]


def _plan_json(capsys, args, hardware: str, *extra) -> dict:
    assert main(["plan", args[0], args[1], *extra, "--hardware", hardware, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_cost_shown_is_the_planners_for_the_same_hardware(job_args, vertex_api, gcs,
                                                              capsys):
    plan = _plan_json(capsys, job_args, "h100:8")
    (cost,) = [c for c in plan["costs"] if c["offer"] == "on_demand"]
    assert main(["cloud", "submit", *job_args, "--accelerator", "h100", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "estimate for h100 (8 x h100" in out
    shown = re.search(r"cost: ~\$([0-9.,]+) estimate \(VM, on-demand, \$([0-9.]+)/device-hour "
                      r"as of ([0-9-]+);", out)
    assert shown, out
    assert float(shown[1].replace(",", "")) == pytest.approx(cost["usd"], abs=0.00005)
    assert (float(shown[2]), shown[3]) == (cost["usd_per_device_hour"], cost["date"])
    assert f"({plan['time']['seconds']:,.0f} s) for {plan['time']['steps']} steps" in out
    assert "Vertex AI bills its own rate" in out
    assert len(_created(vertex_api)) == 1


def test_vertex_ais_own_rate_is_used_where_the_table_has_one(job_args, tmp_path, capsys):
    """With a VM rate for the A100 too (a user's price file), Vertex AI's rate is taken."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("prices:\n  a100-40gb:\n    on_demand:\n      usd_per_device_hour: 1.5\n"
                      "      date: 2026-11-30\n      source: my invoice\n")
    plan = _plan_json(capsys, job_args, "a100-40gb", "--prices", str(prices))
    assert {c["table"] for c in plan["costs"]} == {"prices", "vertex_ai"}
    (cost,) = [c for c in plan["costs"] if c["table"] == "vertex_ai"]
    assert main(["cloud", "submit", *job_args, "--accelerator", "a100", "--yes",
                 "--prices", str(prices)]) == 0
    out = capsys.readouterr().out
    assert f"(Vertex AI, on-demand, ${cost['usd_per_device_hour']:g}/device-hour" in out
    assert "VM rate" not in out


def test_nothing_is_sent_unless_the_user_says_yes(job_args, vertex_api, gcs, monkeypatch,
                                                  capsys):
    _, bucket = gcs
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert main(["cloud", "submit", *job_args, "--accelerator", "h100"]) == 1
    assert "nothing submitted" in capsys.readouterr().out
    assert _created(vertex_api) == []
    assert bucket.get_blob("jobs/j1/recipe.yaml") is None
    assert main(["cloud", "submit", *job_args, "--accelerator", "h100"]) == 0
    assert len(_created(vertex_api)) == 1


def test_a_cost_above_max_cost_is_refused_before_any_call(job_args, vertex_api, capsys):
    plan = _plan_json(capsys, job_args, "h100:8")
    (cost,) = [c for c in plan["costs"] if c["offer"] == "on_demand"]
    below = cost["usd"] * 0.9
    assert main(["cloud", "submit", *job_args, "--accelerator", "h100", "--yes",
                 "--max-cost", f"{below}"]) == 2
    err = capsys.readouterr().err
    assert f"is above --max-cost ${below:,.2f}; nothing was submitted" in err
    assert _created(vertex_api) == []
    assert main(["cloud", "submit", *job_args, "--accelerator", "h100", "--yes",
                 "--max-cost", f"{cost['usd'] * 1.1}"]) == 0
    assert len(_created(vertex_api)) == 1


def test_max_cost_refuses_when_no_price_is_listed(job_args, vertex_api, capsys, tmp_path,
                                                  monkeypatch):
    """A table with no spot TPU v5e price: no estimate to compare, so refused. (The shipped
    table now lists every offer of every accelerator, so this one stands in for it.)"""
    table = tmp_path / "shipped.yaml"
    table.write_text("prices:\n  tpu-v5e:\n    on_demand:\n      usd_per_device_hour: 1.2\n"
                     "      date: 2026-01-27\n      source: test\n")
    monkeypatch.setattr("gemma_panel.planning.prices.SHIPPED", table)
    assert main(["cloud", "submit", *job_args, "--accelerator", "tpu-v5e-4", "--spot",
                 "--yes", "--max-cost", "1000"]) == 2
    captured = capsys.readouterr()
    assert "no spot price listed for tpu-v5e" in captured.out
    assert "there is no cost estimate to compare with" in captured.err
    assert _created(vertex_api) == []


def test_local_data_is_refused_before_the_estimate(vertex_api, capsys):
    assert main(["cloud", "submit", str(RECIPE), "--accelerator", "l4", "--project", "p1",
                 "--output", "gs://my-bucket/jobs", "--yes"]) == 2
    captured = capsys.readouterr()
    assert "is on this machine, where a Vertex AI job cannot read it" in captured.err
    assert "estimate for" not in captured.out and vertex_api.calls == []


def test_unreadable_data_gives_no_estimate_and_the_preflights_sentence(gcs, vertex_api,
                                                                       capsys):
    _, bucket = gcs
    assert main(["cloud", "submit", str(RECIPE), f"data.train_path=gs://{bucket.name}/no.jsonl",
                 "--accelerator", "l4", "--project", "p1", "--output",
                 f"gs://{bucket.name}/jobs", "--yes"]) == 2
    captured = capsys.readouterr()
    assert "note: the data cannot be planned for:" in captured.out
    assert f"no such object in bucket {bucket.name}" in captured.err
    assert _created(vertex_api) == []


@pytest.mark.parametrize("accelerator, replicas, hardware", [
    ("tpu-v5e-16", [], "tpu-v5e:16"),  # a slice of 4 VMs: all 16 chips billed
    ("h100", ["--replicas", "2"], "h100:16"),  # two 8-GPU machines
])
def test_the_cost_counts_every_replica(job_args, vertex_api, capsys, accelerator, replicas,
                                       hardware):
    plan = _plan_json(capsys, job_args, hardware)
    (cost,) = [c for c in plan["costs"] if c["offer"] == "on_demand"]
    assert main(["cloud", "submit", *job_args, "--accelerator", accelerator, *replicas,
                 "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"16 x {hardware.split(':')[0]} (" in out.splitlines()[0]
    shown = re.search(r"cost: ~\$([0-9.,]+) estimate", out)
    assert float(shown[1].replace(",", "")) == pytest.approx(cost["usd"], abs=0.00005)
    (body,) = [b for m, p, b in vertex_api.calls if p.endswith("/customJobs")]
    assert sum(int(p["replicaCount"]) for p in body["jobSpec"]["workerPoolSpecs"]) == (
        2 if replicas else 1)
