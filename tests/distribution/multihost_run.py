"""One process of a multi-host run on this machine: the real trainer on a tiny random Gemma 3.

``python -m tests.distribution.multihost_run SHARED WORKDIR STRATEGY [full]``; the cluster
comes from the GEMMA_PANEL_* variables (none: a single process). SHARED holds the model and
data (written by the test first), WORKDIR is this process's own disk. With ``full`` it
trains the whole run (4 steps) in WORKDIR/run; otherwise it cancels the run after step 2
(only process 0 is asked to stop) and resumes it to the end (only process 0 is told to
resume: the others follow it). Prints one JSON line: losses, validation losses, end status, the final
LoRA weights, the shapes of the batch blocks it placed, and every file it wrote.

Run by tests/distribution/test_multihost_training.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tests.distribution.trainer_run import Recorder, recipe


def lora_weights(result) -> list[list[float]]:
    return [np.asarray(v.value, np.float64).ravel().tolist()
            for v in result.model.backbone.trainable_variables]


def ran(result, sink) -> dict:
    return {"losses": sink.losses, "val": sink.val, "end": sink.end and sink.end[0],
            "status": result.status, "step": result.step, "weights": lora_weights(result)}


def watch_feeding(fed: set) -> None:
    """Record the shape of every process-local block placed into a global array."""
    import jax

    make = jax.make_array_from_process_local_data

    def watched(sharding, local_data, global_shape=None):
        fed.add((tuple(local_data.shape), tuple(global_shape or ())))
        return make(sharding, local_data, global_shape)

    jax.make_array_from_process_local_data = watched


def main() -> None:
    from gemma_panel.distribution import multihost
    from gemma_panel.training.trainer import train

    shared, work, strategy = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    multihost.initialize()
    primary = multihost.is_primary()
    config = recipe(shared, f"distribution.strategy={strategy}")
    out, fed = {}, set()
    watch_feeding(fed)
    if sys.argv[4:] == ["full"]:
        sink = Recorder()
        out["full"] = ran(train(config, work / "run", sink=sink), sink)
    else:
        asked = iter(range(100))  # process 0 alone is asked to stop, after step 2
        sink = Recorder()
        out["cancelled"] = ran(train(config, work / "run", sink=sink,
                                     should_stop=lambda: primary and next(asked) >= 1), sink)
        sink = Recorder()
        out["resumed"] = ran(train(config, work / "run", sink=sink, resume=primary), sink)
    import jax

    out["processes"] = [jax.process_count(), jax.process_index(), len(jax.devices())]
    out["fed"] = sorted(fed)
    out["files"] = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
