"""Time estimate vs measured wall time: ``gemma-panel plan --calibrate`` beside the real run.

First ``gemma-panel plan RECIPE OVERRIDES --calibrate --json`` times a few real steps, the
model's loading, the step's compilation and generated tokens here, and estimates the whole
run; then ``gemma-panel run RECIPE OVERRIDES`` trains it (queue, worker, evaluations,
checkpoints: what a user runs), timed from the command's start to its end. Both run in
child processes, one after the other, with a private ``GEMMA_PANEL_HOME``.

    python benchmarks/quickstart_time.py            # the quickstart cut to 20 steps, 2 evaluations
    python benchmarks/quickstart_time.py --whole    # the whole quickstart (176 steps, 4 evaluations)
    python benchmarks/quickstart_time.py recipes/classification.yaml train.max_steps=30

The load average is printed before and after: on a shared machine the ratio moves with it
(the calibration and the run must see the same load to agree). Measured on 2026-12-01,
2 shared cores, ``python benchmarks/quickstart_time.py`` (20 steps, 2 evaluations):

    estimate: 1039 s for 20 steps (18.72 s per step, 825 ms per generated token of a batch
              (21 answers), 332 s loading and compiling); calibrating took 581 s
    measured: 871 s (gemma-panel run, start to end)
    estimate / measured = 1.19 (+19%)
    load average 11.9 before, 13.7 after calibrating, 6.8 after the run: the run's first
    10 steps took about 21 s each, its last 10 about 9 s

On 2026-12-03, 2 cores of an AMD EPYC (family 26), ``--whole``:

    estimate: 380 s for 176 steps (1.63 s per step, ...); calibrating took 59 s
    measured: 391 s (gemma-panel run, start to end)
    worker peak memory (VmHWM) 3781.9 MB; train step median 1.70 s (176 steps); evaluations
    9.9-12.3 s each, the base model's answers 9.1 s; evaluations 14% of the wall time
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")
# The quickstart's shape kept (evaluations with generated answers, checkpoints), its 176
# steps cut to 20.
SHORT = ["train.max_steps=20", "eval.every_steps=10", "train.checkpoint_every=10"]


def cli(args: list[str], home: str) -> tuple[float, str]:
    """Run ``gemma-panel ARGS`` in a child process: (wall seconds, its stdout)."""
    env = {**os.environ, "GEMMA_PANEL_HOME": home,
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "gemma_panel.cli", *args], env=env,
                         capture_output=True, text=True, cwd=REPO, check=False)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"gemma-panel {' '.join(args)} failed ({out.returncode}):\n"
                 f"{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return seconds, out.stdout


def planned(recipe: str, overrides: list[str], home: str) -> tuple[float, dict]:
    """(seconds ``plan --calibrate`` took, its time estimate)."""
    seconds, stdout = cli(["plan", recipe, *overrides, "--calibrate", "--json"], home)
    lines = stdout.splitlines()  # the JSON's first line is "{" alone, after any progress
    plan = json.loads("\n".join(lines[lines.index("{"):]))
    return seconds, plan["time"]


def breakdown(home: str, wall: float) -> str:
    """Where the run's time went, from its metric times in the run store: the median train
    step, each evaluation (validation loss, samples and task answers: from the step's loss
    to its validation loss, written after the answers) and the base model's answers."""
    from gemma_panel.runs.store import RunStore

    store = RunStore(Path(home))
    run = store.list_runs()[0]
    points = store.metrics(run.id, names=["loss", "val_loss"])
    loss = {p.step: p.time for p in points if p.name == "loss"}
    val = {p.step: p.time for p in points if p.name == "val_loss"}
    steps = sorted(loss)
    gaps = sorted(loss[b] - loss[a] for a, b in itertools.pairwise(steps) if b - 1 == a
                  and a not in val)
    step_s = gaps[len(gaps) // 2]
    evals = {s: val[s] - loss[s] for s in sorted(val) if s in loss}
    base = loss[steps[0]] - val[0] - step_s if 0 in val else 0.0  # base answers, step 1
    share = (sum(evals.values()) + base) / wall
    end = store.events(run.id, kinds=["end"])[-1].data or {}
    return (f"worker peak memory (VmHWM) {end.get('peak_rss_mb')} MB; train step median {step_s:.2f} s ({len(steps)} steps); evaluations "
            + ", ".join(f"step {s} {t:.1f} s" for s, t in evals.items())
            + f"; the base model's answers {base:.1f} s; evaluations {share:.0%} of the "
            f"wall time (target at most 15%)")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=QUICKSTART)
    parser.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--whole", action="store_true",
                        help="the recipe as it is (default for the quickstart: cut to 20 steps)")
    args = parser.parse_args()
    overrides = args.overrides
    if args.recipe == QUICKSTART and not args.whole and not overrides:
        overrides = SHORT
    print(f"{Path(args.recipe).name} {' '.join(overrides)}", flush=True)
    with tempfile.TemporaryDirectory() as home:
        print(f"before: {load()}", flush=True)
        took, estimate = planned(args.recipe, overrides, home)
        print(f"estimate: {estimate['seconds']:.0f} s for {estimate['steps']} steps "
              f"({estimate['method']}); calibrating took {took:.0f} s", flush=True)
        print(f"then: {load()}", flush=True)
        measured, _ = cli(["run", args.recipe, *overrides], home)
        print(f"measured: {measured:.0f} s (gemma-panel run, start to end)")
        print(breakdown(home, measured))
        print(f"after: {load()}")
        print(f"estimate / measured = {estimate['seconds'] / measured:.2f} "
              f"({(estimate['seconds'] - measured) / measured:+.0%})")


if __name__ == "__main__":
    main()
