"""What recording metrics in the run store costs per training step. Target: under 2%.

    python benchmarks/metrics_overhead.py [--steps 200] [--model tiny|gemma3-270m] [--repeats 2]

The real trainer runs the same recipe with a sink that only times steps (``--`` no store) and
with the worker's sinks (``StoreSink`` into a fresh store, plus the cancel check the worker
polls), ``--repeats`` times each, alternating. Two figures:

* overhead: all the time the store costs per step, on any thread: the training thread's
  time inside ``StoreSink.on_metrics`` (it queues the step's values) and ``should_stop``,
  plus the sink's writer thread's SQLite time (its inserts and commits), divided by the
  median step interval. The writer overlaps the step when a core is free, so this is an
  upper bound on what it takes from training;
* A/B: the median interval between consecutive steps with and without the store, the
  measured slow-down, machine noise included (a few % on 2 shared cores).

The writer's time is wall-clock, waits for the GIL (the training thread holds it between
XLA calls) and for other processes included; its CPU time is printed beside it, and so is
the writer's CPU time per step with no training beside it, for the same rows, 32 and 1
steps to a flush: the figure least moved by a busy machine.

The tiny model (2 layers, hidden 64) has ~10 ms steps, the hardest case for a fixed cost;
Gemma 3 270M steps take seconds on a CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gemma_panel.training.events import NullSink


class StepClock(NullSink):
    """A sink that records when each step's metrics arrive (the step boundary)."""

    def __init__(self):
        self.stamps: list[float] = []

    def on_metrics(self, step, tokens, metrics):
        if "loss" in metrics:
            self.stamps.append(time.perf_counter())

    def median_interval(self) -> float:
        gaps = [b - a for a, b in zip(self.stamps[5:], self.stamps[6:])]  # skip compile
        return statistics.median(gaps)


class Timed:
    """Wraps a callable and adds up the time spent in it: wall-clock (``total``, waits for
    the GIL and the database lock included) and the calling thread's CPU time (``cpu``)."""

    def __init__(self, fn):
        self.fn, self.total, self.cpu, self.calls = fn, 0.0, 0.0, 0

    def __call__(self, *args, **kwargs):
        began, began_cpu = time.perf_counter(), time.thread_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.total += time.perf_counter() - began
            self.cpu += time.thread_time() - began_cpu
            self.calls += 1


def recipe_for(model: str, steps: int, workdir: Path):
    from gemma_panel.config import load_recipe

    if model == "tiny":
        from tests.models.tiny_gguf import write_tiny_gemma_gguf

        source = workdir / "tiny.gguf"
        if not source.exists():
            write_tiny_gemma_gguf(source, "gemma3", hidden=64, heads=2, kv_heads=1,
                                  head_dim=256, ffn=128, layers=2)
        extra = ["data.sequence_length=64", "train.batch_size=2"]
    else:
        source, extra = model, []
    return load_recipe(None, [
        f"model.source={source}", f"train.max_steps={steps}", "train.warmup_steps=1",
        f"data.train_path={REPO / 'examples/instruction/unit_conversions.jsonl'}",
        f"train.checkpoint_every={steps}", f"eval.every_steps={10 * steps}",
        "eval.num_samples=1", "eval.max_new_tokens=2", "eval.max_examples=2", *extra])


def one_run(recipe, workdir: Path, with_store: bool) -> dict:
    from gemma_panel.runs import RunStore, StoreSink
    from gemma_panel.runs.worker import StopSignal
    from gemma_panel.training import MultiSink, train

    clock = StepClock()
    if not with_store:
        started = time.perf_counter()
        train(recipe, workdir / f"plain-{time.time_ns()}", sink=clock)
        return {"interval": clock.median_interval(), "wall": time.perf_counter() - started}
    store = RunStore(workdir / f"store-{time.time_ns()}")
    run = store.create_run(recipe)
    sink = StoreSink(store, run.id)
    sink.on_metrics = timed_metrics = Timed(sink.on_metrics)
    sink._write = timed_writes = Timed(sink._write)

    class Beat:  # the worker's heartbeat thread, reduced to what StopSignal reads
        superseded = False

    should_stop = Timed(StopSignal(store, run.id, Beat()))
    started = time.perf_counter()
    train(recipe, run.run_dir, sink=MultiSink(sink, clock), should_stop=should_stop)
    sink.close()
    return {"interval": clock.median_interval(), "wall": time.perf_counter() - started,
            "sink_per_step": timed_metrics.total / timed_metrics.calls,
            "stop_per_step": should_stop.total / should_stop.calls,
            "writer_per_step": timed_writes.total / timed_metrics.calls,
            "writer_cpu_per_step": timed_writes.cpu / timed_metrics.calls,
            "rows": len(store.metrics(run.id)), "flush_every": sink.flush_every,
            "names": _names_of_a_step(store.metrics(run.id))}


def _names_of_a_step(points) -> list[str]:
    """The metric names of a training step (the tenth; evaluations add theirs now and then)."""
    steps = sorted({p.step for p in points})
    step = steps[min(9, len(steps) - 1)]
    return [p.name for p in points if p.step == step]


def writer_alone(workdir: Path, recipe, names: list[str], per_flush: int,
                 flushes: int = 50) -> float:
    """The writer's CPU time per step with nothing beside it: the same metric names,
    ``per_flush`` steps in each flush (one: steps of a second or more; 32: ~8 ms steps)."""
    from gemma_panel.runs import RunStore, StoreSink

    store = RunStore(workdir / f"alone-{time.time_ns()}")
    sink = StoreSink(store, store.create_run(recipe).id, flush_every=3600)
    spent = 0.0
    for flush in range(flushes):
        for step in range(flush * per_flush, (flush + 1) * per_flush):
            sink.on_metrics(step, step * 100, {name: 0.5 for name in names})
        began = time.thread_time()
        sink.flush()
        spent += time.thread_time() - began
    sink.close()
    return spent / (flushes * per_flush)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--model", default="tiny", help="tiny, or a model source")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("GEMMA_PANEL_HOME", str(workdir / "home"))
        recipe = recipe_for(args.model, args.steps, workdir)
        plain, stored = [], []
        for _ in range(args.repeats):
            plain.append(one_run(recipe, workdir, with_store=False))
            stored.append(one_run(recipe, workdir, with_store=True))
        alone = {n: writer_alone(workdir, recipe, stored[0]["names"], n) for n in (1, 32)}
    step = statistics.median(r["interval"] for r in plain)
    step_store = statistics.median(r["interval"] for r in stored)
    sink = statistics.median(r["sink_per_step"] for r in stored)
    stop = statistics.median(r["stop_per_step"] for r in stored)
    writer = statistics.median(r["writer_per_step"] for r in stored)
    writer_cpu = statistics.median(r["writer_cpu_per_step"] for r in stored)
    overhead = (sink + stop + writer) / step
    print(f"model {args.model}, {args.steps} steps x {args.repeats} runs per variant, "
          f"{stored[0]['rows']} metric rows per run")
    print(f"median step interval without the store: {step * 1e3:8.2f} ms")
    print(f"median step interval with the store:    {step_store * 1e3:8.2f} ms "
          f"(A/B difference {100 * (step_store - step) / step:+.2f}%, machine noise included)")
    print(f"StoreSink.on_metrics per step:          {sink * 1e6:8.1f} us")
    print(f"should_stop (cancel check) per step:    {stop * 1e6:8.1f} us")
    print(f"writer thread's SQLite time per step:   {writer * 1e6:8.1f} us "
          f"({writer_cpu * 1e6:.1f} us of it on a CPU)")
    print(f"the writer alone, same rows:            {alone[32] * 1e6:8.1f} us of CPU per step "
          f"at 32 steps a flush, {alone[1] * 1e6:.1f} at 1 (no training beside it)")
    print(f"training thread alone:                  {100 * (sink + stop) / step:8.2f}%")
    print(f"overhead, writer thread included:       {100 * overhead:8.2f}%  (target < 2%: "
          f"{'met' if overhead < 0.02 else 'NOT met'}); A/B "
          f"{100 * (step_store - step) / step:+.2f}%")


if __name__ == "__main__":
    main()
