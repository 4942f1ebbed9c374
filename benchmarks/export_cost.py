"""Export cost: time and peak memory of each export of a LoRA-tuned Gemma 3 270M.

    python benchmarks/export_cost.py                      # trains a 2-step LoRA run first
    python benchmarks/export_cost.py --run RUN_DIR_OR_ID  # an existing run
    python benchmarks/export_cost.py --only gguf:q8_0 hf

Each export runs in a new Python process, so its peak memory (VmHWM, the child's own high
water mark) is its own; a child that only rebuilds the tuned model gives the baseline that
every export pays before it starts. "export+verify" is the exporter's own timing from the
manifest (writing, loading back, comparing); "process" adds imports and the model load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPORTS = ["keras", "keras:int8", "preset", "lora", "savedmodel", "hf", "peft",
           "gguf:f32", "gguf:f16", "gguf:bf16", "gguf:q8_0", "gguf:q5_0", "gguf:q4_0"]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from gemma_panel.export import export_run, load_run_model
run_dir, spec, out = sys.argv[1], sys.argv[2], sys.argv[3]
if spec == "load":
    load_run_model(run_dir)
    result = {}
else:
    fmt, _, quant = spec.partition(":")
    manifest = export_run(run_dir, fmt, quantize=quant or None, out=out).manifest
    result = {"export_and_verify_s": manifest["timings"]["export_and_verify_s"],
              "bytes": manifest["total_bytes"], "passed": manifest["verification"]["passed"],
              "checks": {c["name"]: c["detail"] for c in manifest["verification"]["checks"]}}
status = open("/proc/self/status").read()
hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
result.update(process_s=time.perf_counter() - t0, peak_rss_mb=hwm / 1024)
print(json.dumps(result))
"""

TRAIN = r"""
import sys
from gemma_panel.config import load_recipe
from gemma_panel.training import train
recipe = load_recipe(None, [f"data.train_path={sys.argv[2]}", "train.max_steps=2",
                            "train.warmup_steps=1", "train.learning_rate=2e-3",
                            "train.batch_size=2", "eval.every_steps=100",
                            "eval.task_examples=0", "eval.num_samples=0",
                            "data.sequence_length=64"])
print(train(recipe, sys.argv[1]).status)
"""


def child(args: list[str], script: str = CHILD) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                         text=True, check=False, cwd=REPO)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a run folder or id (default: train a 2-step run)")
    parser.add_argument("--only", nargs="*", help=f"a subset of {' '.join(EXPORTS)}")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run
        if run is None:
            run = str(Path(scratch) / "run")
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", TRAIN, run,
                            str(REPO / "examples/instruction/unit_conversions.jsonl")],
                           check=True, cwd=REPO, capture_output=True)
            print(f"trained a 2-step LoRA run in {time.perf_counter() - started:.0f} s")
        baseline = child([run, "load", ""])
        print(f"baseline (rebuild the tuned model from its checkpoint): "
              f"{baseline.get('process_s', 0):.1f} s, {baseline.get('peak_rss_mb', 0):.0f} MB")
        print(f"{'export':<12}{'export+verify s':>16}{'process s':>11}{'peak MB':>9}"
              f"{'size MB':>9}  verified")
        results = {"baseline": baseline}
        for spec in args.only or EXPORTS:
            out = Path(scratch) / spec.replace(":", "-")
            found = results[spec] = child([run, spec, str(out)])
            if "error" in found:
                print(f"{spec:<12}  failed: {found['error']}")
                continue
            print(f"{spec:<12}{found['export_and_verify_s']:>16.1f}{found['process_s']:>11.1f}"
                  f"{found['peak_rss_mb']:>9.0f}{found['bytes'] / 1e6:>9.1f}  {found['passed']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
