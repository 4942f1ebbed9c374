"""`gemma-panel plan RECIPE`: the plan of a tiny model's recipe, as text and as JSON."""

from __future__ import annotations

import json

import pytest

from gemma_panel.cli import main


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory):
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    folder = tmp_path_factory.mktemp("plan")
    gguf = write_tiny_gemma_gguf(folder / "tiny.gguf", "gemma3", hidden=64, heads=2,
                                 kv_heads=1, head_dim=32, ffn=128, layers=2)
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Add one to {i}.",
                                        "response": f"The answer is {i + 1}."}) + "\n"
                            for i in range(40)))
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"model:\n  source: {gguf}\ndata:\n  train_path: {data}\n")
    return str(recipe)


def test_plan_prints_settings_warnings_memory_time_and_cost(tiny_recipe, capsys):
    assert main(["plan", tiny_recipe, "train.learning_rate=0.005", "--hardware",
                 "tpu-v5e:8"]) == 0
    out = capsys.readouterr().out
    assert "plan for 8 x tpu-v5e" in out
    assert "train.epochs = 5.0" in out and "LIMA" in out
    assert "! train.learning_rate: a learning rate of 0.005 is far outside" in out
    assert "memory per device, fsdp over 8:" in out and ": FITS" in out
    assert "time: " in out and "cost: ~$" in out and "estimate" in out


def test_plan_json_has_every_part(tiny_recipe, capsys):
    assert main(["plan", tiny_recipe, "--hardware", "h100", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    fields = {r["field"] for r in plan["recommendations"]}
    assert {"data.sequence_length", "train.batch_size", "lora.rank"} <= fields
    assert plan["memory"][0]["badge"] == "fits" and plan["time"]["seconds"] > 0
    assert {c["offer"] for c in plan["costs"]} == {"on_demand", "spot"}


def test_an_unknown_hardware_name_is_one_sentence(tiny_recipe, capsys):
    assert main(["plan", tiny_recipe, "--hardware", "tpu-v9"]) == 2
    assert "unknown hardware 'tpu-v9'" in capsys.readouterr().err


def test_calibrate_times_real_steps_of_the_recipe(tiny_recipe, capsys):
    assert main(["plan", tiny_recipe, "data.sequence_length=64", "--calibrate",
                 "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["time"]["method"].startswith("timed here: ")
    assert "per generated token" in plan["time"]["method"]
    assert main(["plan", tiny_recipe, "--calibrate", "--hardware", "l4"]) == 2
    assert "--calibrate times training steps on this machine" in capsys.readouterr().err


def test_calibrate_without_task_rows_times_the_samples_alone(tiny_recipe, capsys):
    assert main(["plan", tiny_recipe, "data.sequence_length=64", "eval.task_examples=0",
                 "--calibrate", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["time"]["method"].startswith("timed here: ")
