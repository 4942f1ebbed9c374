"""Memory estimate vs measured peak: the planner's figure beside a real training's VmHWM.

Each row trains a few steps in a child process (so each peak is its own) and reads the
child's peak resident memory (VmHWM in /proc/self/status) at the end; the estimate is
``gemma_panel.planning.memory.estimate_memory`` for the same recipe and model shape.

    python benchmarks/memory_estimate.py                    # the tiny random Gemma rows
    python benchmarks/memory_estimate.py --real 128 512    # + Gemma 3 270M at those lengths
    python benchmarks/memory_estimate.py --real 512 --skip-tiny
    python benchmarks/memory_estimate.py --held-out --skip-tiny   # the rows not fitted on

The 270M rows take a minute or two each on two idle cores (5-10 at load 10-17) and 3-5 GB
of RAM. Measured on 2026-12-01 (2 shared cores); the constants in planning/memory.py were
fitted to the first five rows, the last four are held out (``HELD_OUT``; load 10-17):

    run                                            estimate  measured  error  (loading peak)
    tiny, seq 128, batch 2                         1450 MiB  1361 MiB   +7%
    tiny, seq 512, batch 8                         2569 MiB  2567 MiB   +0%
    tiny, seq 1024, batch 16                       7700 MiB  7700 MiB   +0%
    gemma3-270m, seq 128, batch 2                  4598 MiB  4342 MiB   +6%   4066 MiB
    gemma3-270m, seq 512, batch 2                  7141 MiB  6326 MiB  +13%   4024 MiB
    gemma3-270m, seq 256, batch 4                  6915 MiB  6296 MiB  +10%   4115 MiB
    gemma3-270m, seq 256, batch 2, rank 16, q/k/v/o 5370 MiB 4980 MiB   +8%   4140 MiB
    gemma3-270m, seq 256, batch 2, base bfloat16   4849 MiB  4655 MiB   +4%   4182 MiB
    gemma3-270m, seq 256, batch 4, remat           6915 MiB  6261 MiB  +10%   3914 MiB

The remat row was estimated at 4755 MiB (-24%) before planning/memory.py learnt that on
CPU ``jax.checkpoint`` saves nothing (same peak as without it). The bfloat16 row was
measured again (2026-12-02) after the head stopped widening the whole tied embedding to
float32 (training/step.narrow_head_terms): 4655 MiB, below float32's 4774 MiB at seq 256,
batch 2 (before: 5334 MiB, and 5921 MiB with a float32 copy kept; docs/concepts/plan.md).
The int8 row of ``HELD_OUT`` was not measured this round (time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUICK = ["train.max_steps=2", "train.warmup_steps=0", "eval.every_steps=1000",
         "eval.num_samples=1", "eval.task_examples=1", "eval.max_new_tokens=2",
         "eval.max_examples=4", "train.checkpoint_every=1000"]


def child(recipe_path: str | None, overrides: list[str]) -> None:
    """Load the model once (peak so far: loading), then train; print both peaks."""
    import gc

    from gemma_panel.config import load_recipe
    from gemma_panel.training.trainer import load_tuned_model, train

    recipe = load_recipe(recipe_path, [*overrides, *QUICK])
    lm = load_tuned_model(recipe)
    loading = _peak()
    del lm
    gc.collect()
    with tempfile.TemporaryDirectory() as run_dir:
        train(recipe, run_dir)
    print(json.dumps({"peak": _peak(), "loading": loading}))


def _peak() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) * 1024 for line in status.splitlines()
                if line.startswith("VmHWM:"))


def measure(recipe_path: str | None, overrides: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, __file__, "--child", recipe_path or "-", *overrides]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def estimate(recipe_path: str | None, overrides: list[str]) -> tuple[int, dict]:
    """The planner's estimate for the recipe, the model's shape read from its weights."""
    from gemma_panel.config import load_recipe
    from gemma_panel.planning.memory import estimate_memory, model_size, training_shape

    recipe = load_recipe(recipe_path, [*overrides, *QUICK])
    result = estimate_memory(model_size(recipe.model.source), training_shape(
        recipe, answer_share=_answer_share(recipe)), backend="cpu")
    return result.total, result.parts


def _answer_share(recipe) -> float:
    from gemma_panel.planning.stats import dataset_stats_for

    stats = dataset_stats_for(recipe)
    return stats.answer_share(recipe.data.sequence_length, recipe.data.pack)


def tiny_rows(folder: Path) -> list[tuple[str, str | None, list[str]]]:
    sys.path.insert(0, str(REPO))
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    gguf = write_tiny_gemma_gguf(folder / "tiny.gguf", "gemma3", hidden=256, heads=4,
                                 kv_heads=1, head_dim=64, ffn=1024, layers=4)
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Add one to {i}.",
                                        "response": f"The answer is {i + 1}. " * 8}) + "\n"
                            for i in range(64)))
    base = [f"model.source={gguf}", f"data.train_path={data}", "data.template=gemma"]
    return [(f"tiny, seq {n}, batch {b}", None, [*base, f"data.sequence_length={n}",
                                                f"train.batch_size={b}"])
            for n, b in ((128, 2), (512, 8), (1024, 16))]


def real_rows(lengths: list[int]) -> list[tuple[str, str | None, list[str]]]:
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    return [(f"gemma3-270m, seq {n}, batch 2", recipe,
             [f"data.sequence_length={n}", "train.batch_size=2"]) for n in lengths]


# Gemma 3 270M rows the constants were not fitted on: another length, batch, rank and
# each memory mode (label, overrides beside data.sequence_length=256).
HELD_OUT = [
    ("batch 4", ["train.batch_size=4"]),
    ("batch 2, rank 16, q/k/v/o", ["train.batch_size=2", "lora.rank=16",
                                   "lora.target_layers=[query,key,value,attention_output]"]),
    ("batch 2, base bfloat16", ["train.batch_size=2", "memory.base_weights=bfloat16"]),
    ("batch 2, base int8", ["train.batch_size=2", "memory.base_weights=int8"]),
    ("batch 4, remat", ["train.batch_size=4", "memory.remat=true"]),
]


def held_out_rows(names: list[str] | None = None) -> list[tuple[str, str | None, list[str]]]:
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    return [(f"gemma3-270m, seq 256, {label}", recipe, ["data.sequence_length=256", *extra])
            for label, extra in HELD_OUT if not names or label in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=int, nargs="*", default=[],
                        help="also Gemma 3 270M at these sequence lengths")
    parser.add_argument("--held-out", nargs="*", metavar="LABEL",
                        help="also the Gemma 3 270M rows the constants were not fitted on "
                             "(all, or those named: --held-out 'batch 2, base bfloat16')")
    parser.add_argument("--skip-tiny", action="store_true", help="only the Gemma 3 270M rows")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        path, *overrides = args.child
        child(None if path == "-" else path, overrides)
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = ([] if args.skip_tiny else tiny_rows(Path(tmp))) + real_rows(args.real) \
            + (held_out_rows(args.held_out or None) if args.held_out is not None else [])
        print(f"{'run':50} {'estimate':>11} {'measured':>11} {'error':>6} "
              f"{'(loading peak)':>14}")
        for label, recipe, overrides in rows:
            est, _ = estimate(recipe, overrides)
            got = measure(recipe, overrides)
            peak = got["peak"]
            print(f"{label:50} {est / 2**20:7.0f} MiB {peak / 2**20:7.0f} MiB "
                  f"{(est - peak) / peak:+6.0%} {got['loading'] / 2**20:10.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
