"""The quickstart recipe on the real Gemma 3 270M for 3 steps, on one device and then under
``fsdp`` over the 8 host devices XLA_FLAGS gives this process; prints one JSON line with each
run's logged losses, its status and its distribution log line.

Run by tests/distribution/test_real_fsdp.py in a subprocess (the device count is fixed when
JAX starts). The model is loaded once (the second run reads the loader's cache).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tests.distribution.trainer_run import Recorder

ROOT = Path(__file__).resolve().parents[2]
# The quickstart, cut to 3 steps: fsdp needs a batch that divides by the 8 devices, and the
# evaluations and checkpoints are left out (only the training losses are compared). Short
# rows keep the peak low: 8 simulated devices live in this one process's memory, and each
# gathers the 270M's embedding for the head (at 128 tokens the process reached 13 GB).
OVERRIDES = ["train.max_steps=3", "train.batch_size=8", "data.sequence_length=64",
             "train.warmup_steps=1", "train.checkpoint_every=1000", "eval.every_steps=1000",
             "eval.num_samples=0", "eval.task_examples=0"]


def main() -> None:
    from gemma_panel.config import load_recipe
    from gemma_panel.training.trainer import train

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in ("single", "fsdp"):
            recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml",
                                 [*OVERRIDES, f"distribution.strategy={strategy}"])
            sink = Recorder()
            train(recipe, Path(tmp) / strategy, sink=sink)
            out[strategy] = {"losses": sink.losses, "end": sink.end[0],
                             "logs": [line for line in sink.logs
                                      if line.startswith("distribution:")]}
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
