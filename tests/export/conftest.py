"""A tiny LoRA-tuned Gemma 3 run (seconds), shared by the fast export tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models.tiny_gguf import write_tiny_gemma_gguf

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "instruction" / "unit_conversions.jsonl"


def tiny_overrides(model_path: Path, steps: int = 4) -> list[str]:
    # A high learning rate so 4 steps move the LoRA factors far enough that "the export
    # carries the LoRA" (logits differ from the base model's) is a real check.
    return [f"model.source={model_path}", f"data.train_path={DATA}", f"train.max_steps={steps}",
            "train.warmup_steps=1", "train.learning_rate=5e-3", "eval.every_steps=100",
            "eval.task_examples=0", "eval.num_samples=0", "data.sequence_length=64",
            ("lora.target_layers=[query,key,value,attention_output,ffw_gating,ffw_gating_2,"
             "ffw_linear]")]


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    # head_dim 256: transformers' GGUF reader assumes query_pre_attn_scalar = 256 (see
    # tests/models/test_gguf_import.py).
    folder = tmp_path_factory.mktemp("tiny_export_model")
    return write_tiny_gemma_gguf(folder / "tiny.gguf", "gemma3", hidden=64, heads=2,
                                 kv_heads=1, head_dim=256, ffn=128, layers=2)


@pytest.fixture(scope="session")
def tiny_run(tiny_gguf):
    """(run id, run folder, tuned model): 4 LoRA steps on the tiny model, in the run store."""
    from gemma_panel.config import load_recipe
    from gemma_panel.runs import RunStore
    from gemma_panel.training import train

    recipe = load_recipe(None, tiny_overrides(tiny_gguf) + ["name=tiny-export"])
    store = RunStore()
    run = store.create_run(recipe)
    result = train(recipe, run.run_dir)
    assert result.status == "succeeded", result.message
    return run.id, Path(run.run_dir), result.model


@pytest.fixture(scope="session")
def tiny_source(tiny_run):
    """The tiny run's tuned model rebuilt from its checkpoint, as export_run sees it."""
    from gemma_panel.export import load_run_model

    return load_run_model(tiny_run[1])
