"""Run the real trainer on a tiny random Gemma 3 under each strategy, on the host devices
XLA_FLAGS gives this process, and print one JSON line: per strategy the logged losses, the
validation losses, the log lines about devices, and the final LoRA weights' checksum; then
a cancelled fsdp run resumed on one device.

Run by tests/distribution/test_sharded_trainer.py in a subprocess (the device count is fixed
when JAX starts).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.models.tiny_gguf import write_tiny_gemma_gguf
from tests.training.conftest import TINY


class Recorder:
    def __init__(self):
        self.losses, self.val, self.logs, self.end = [], [], [], None

    def on_start(self, info): pass
    def on_metrics(self, step, tokens, metrics):
        if "loss" in metrics:
            self.losses.append(metrics["loss"])
        if "val_loss" in metrics:
            self.val.append(metrics["val_loss"])
    def on_samples(self, step, samples): pass
    def on_checkpoint_start(self, step): pass
    def on_checkpoint(self, step, path, best): pass
    def on_log(self, message): self.logs.append(message)
    def on_end(self, status, message): self.end = (status, message)


def recipe(folder: Path, *overrides):
    from gemma_panel.config import load_recipe

    data = folder / "pairs.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"prompt": f"Add one to {i}.",
                                            "response": f"The answer is {i + 1}."}) + "\n"
                                for i in range(40)))
    model = folder / "tiny.gguf"
    if not model.exists():
        write_tiny_gemma_gguf(model, "gemma3", **TINY)
    return load_recipe(None, [
        f"model.source={model}", f"data.train_path={data}", "data.sequence_length=48",
        "data.validation_fraction=0.2", "train.max_steps=4", "train.warmup_steps=1",
        "train.batch_size=8", "train.checkpoint_every=2", "train.learning_rate=0.003",
        "eval.every_steps=2", "eval.num_samples=1", "eval.task_examples=0",
        "eval.max_new_tokens=2", *overrides])


def weights(result) -> float:
    return float(sum(np.abs(np.asarray(v.value)).sum()
                     for v in result.model.backbone.trainable_variables))


def watch_layout(seen: list) -> None:
    """Record, at each optimizer step, how the state is laid out (devices, any split)."""
    from gemma_panel.training.trainer import TrainingRun

    step = TrainingRun.optimizer_step

    def watched(self, state):
        arrays = list(state.trainable)
        seen.append({"devices": len(arrays[0].sharding.device_set),
                     "split": any(not a.sharding.is_fully_replicated for a in arrays)})
        return step(self, state)

    TrainingRun.optimizer_step = watched


def main() -> None:
    from gemma_panel.training.trainer import train

    out, seen = {}, []
    watch_layout(seen)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for strategy in ("single", "fsdp", "data_parallel"):
            sink = Recorder()
            seen.clear()
            result = train(recipe(tmp, f"distribution.strategy={strategy}"), tmp / strategy,
                           sink=sink)
            out[strategy] = {"losses": sink.losses, "val": sink.val, "logs": sink.logs[:3],
                             "end": sink.end[0], "weights": weights(result),
                             "layout": seen[-1]}
        # cancelled after 2 steps on 8 devices, resumed on one: the same end as "single"
        steps = iter(range(100))
        train(recipe(tmp, "distribution.strategy=fsdp"), tmp / "moved", sink=Recorder(),
              should_stop=lambda: next(steps) >= 1)
        sink = Recorder()
        result = train(recipe(tmp, "distribution.strategy=single"), tmp / "moved", sink=sink,
                       resume=True)
        out["fsdp_then_single"] = {"losses": sink.losses, "end": sink.end[0],
                                   "weights": weights(result)}
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
