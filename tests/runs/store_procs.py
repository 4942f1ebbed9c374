"""Processes for the concurrency tests: ``python -m tests.runs.store_procs ROLE ROOT ...``.

writer ROOT RUN_ID STEPS   records STEPS steps of NAMES metrics, all equal to the step,
                           1 ms apart (training steps are never back to back)
reader ROOT RUN_ID SECONDS reads snapshots, prints JSON: reads, torn, distinct sizes seen
crasher ROOT               creates a run, prints its id, writes steps until it is killed

Writers print every tenth step once it is committed.
"""

from __future__ import annotations

import json
import sys
import time

from gemma_panel.runs import RunStore, StoreSink

NAMES = [f"m{i}" for i in range(10)]


def write(store: RunStore, run_id: str, steps, pause: float = 0.0) -> None:
    with StoreSink(store, run_id, flush_every=0.05) as sink:
        for step in steps:
            time.sleep(pause)
            sink.on_metrics(step, step * 7, {name: float(step) for name in NAMES})
            if step % 10 == 0:
                sink.flush()
                print(step, flush=True)  # committed up to here


def check_snapshot(store: RunStore, run_id: str) -> tuple[int, list[str]]:
    """(steps seen, problems) for one consistent read of a run's metrics and row."""
    with store.snapshot() as conn:
        rows = conn.execute("SELECT step, tokens, name, value FROM metrics WHERE run_id = ?",
                            (run_id,)).fetchall()
        run_step = conn.execute("SELECT step FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    by_step: dict[int, dict] = {}
    problems = []
    for step, tokens, name, value in rows:
        by_step.setdefault(step, {})[name] = value
        if value != float(step) or tokens != step * 7:
            problems.append(f"step {step}: {name}={value} tokens={tokens}")
    for step, values in by_step.items():
        if sorted(values) != sorted(NAMES):
            problems.append(f"step {step}: torn, only {sorted(values)}")
    if by_step and sorted(by_step) != list(range(1, max(by_step) + 1)):
        problems.append("a gap in the steps")
    if max(by_step, default=0) != run_step:
        problems.append(f"runs.step {run_step} != newest metrics step {max(by_step, default=0)}")
    return len(by_step), problems


def main(argv: list[str]) -> None:
    role, root = argv[0], argv[1]
    store = RunStore(root)
    if role == "writer":
        write(store, argv[2], range(1, int(argv[3]) + 1), pause=0.001)
    elif role == "reader":
        print("ready", flush=True)
        deadline, reads, sizes, torn = time.monotonic() + float(argv[3]), 0, set(), []
        while time.monotonic() < deadline:
            size, problems = check_snapshot(store, argv[2])
            reads, torn = reads + 1, torn + problems
            sizes.add(size)
        print(json.dumps({"reads": reads, "torn": torn[:5], "sizes": len(sizes)}))
    elif role == "crasher":
        from gemma_panel.config import Recipe

        run = store.create_run(Recipe(name="crash"))
        print(run.id, flush=True)
        write(store, run.id, range(1, 10**9))


if __name__ == "__main__":
    main(sys.argv[1:])
