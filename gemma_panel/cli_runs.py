"""``gemma-panel run`` / ``runs ...`` / ``worker``: the run store from the command line.

    gemma-panel run RECIPE [SECTION.FIELD=VALUE ...] [--detach]
    gemma-panel runs list | show ID | logs ID [-f] | cancel ID | resume ID | delete ID [--yes]
    gemma-panel runs compare ID ID ... [--by tokens] | parallel [N]
    gemma-panel worker RUN_ID

Run ids may be shortened to any unique prefix. Without ``--detach``, ``run`` and ``runs
resume`` follow the run and exit with its status: 0 succeeded, 1 failed, 3 cancelled,
4 lost (2: the command itself was wrong). Ctrl-C while following cancels the run (it saves a
checkpoint and can be resumed); a second Ctrl-C stops following.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time


def add_run_commands(sub) -> None:
    """Register ``run``, ``runs`` and ``worker`` on an argparse subparsers object."""
    run = sub.add_parser("run", help="queue a training run from a recipe and follow it")
    run.add_argument("recipe", help="a YAML recipe, e.g. recipes/quickstart.yaml")
    run.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE",
                     help="override recipe fields, e.g. train.learning_rate=1e-4")
    run.add_argument("--detach", action="store_true",
                     help="print the run id and return; the run goes on in the background")
    run.add_argument("--trainer", metavar="MODULE:FUNCTION",
                     help="a custom training function with gemma_panel.training.train's "
                          "signature (default: that one)")
    run.set_defaults(func=cmd_run)

    runs = sub.add_parser("runs", help="list, inspect, cancel, resume, compare, delete runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", help="every run, newest first")
    listing.add_argument("--status", help="only runs with this status")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    show = runs_sub.add_parser("show", help="one run: status, cause, progress, metrics, folder")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)
    logs = runs_sub.add_parser("logs", help="the worker's log")
    logs.add_argument("run_id")
    logs.add_argument("-n", "--lines", type=int, default=50, help="last N lines (0: all)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=cmd_logs)
    cancel = runs_sub.add_parser("cancel", help="stop a run at its next step (checkpointed)")
    cancel.add_argument("run_id")
    cancel.add_argument("--wait", action="store_true", help="return once it has stopped")
    cancel.set_defaults(func=cmd_cancel)
    resume = runs_sub.add_parser("resume", help="continue a failed, cancelled or lost run")
    resume.add_argument("run_id")
    resume.add_argument("--detach", action="store_true")
    resume.add_argument("--accept-changed-data", action="store_true",
                        help="resume even though a data file changed since the run trained "
                             "on it (recorded on the run; the result is no longer exact)")
    resume.set_defaults(func=cmd_resume)
    delete = runs_sub.add_parser("delete", help="remove runs: their rows and folders")
    delete.add_argument("run_ids", nargs="+")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=cmd_delete)
    compare = runs_sub.add_parser("compare", help="metrics, differing settings, samples")
    compare.add_argument("run_ids", nargs="+")
    compare.add_argument("--by", choices=["step", "tokens"], default="step")
    compare.add_argument("--json", action="store_true", help="curves and all, as JSON")
    compare.set_defaults(func=cmd_compare)
    parallel = runs_sub.add_parser("parallel", help="show or set how many runs train at once")
    parallel.add_argument("n", type=int, nargs="?")
    parallel.set_defaults(func=cmd_parallel)

    worker = sub.add_parser("worker", help="train one run (the queue starts this for you)")
    worker.add_argument("run_id")
    worker.add_argument("--store", help="store folder (default: GEMMA_PANEL_HOME)")
    worker.add_argument("--foreground", action="store_true",
                        help="print here instead of to the run's log file")
    worker.set_defaults(func=cmd_worker)


def _store(args=None):
    from gemma_panel.runs import RunStore

    return RunStore(getattr(args, "store", None))


def _when(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def cmd_run(args) -> int:
    from gemma_panel.config import load_recipe
    from gemma_panel.runs import DEFAULT_TRAINER, queue, submit

    recipe = load_recipe(args.recipe, args.overrides)
    store = _store()
    run = submit(recipe, store, trainer=args.trainer or DEFAULT_TRAINER)
    ahead = (queue.position(store, run.id) or 1) - 1
    print(f"run {run.id} queued" + (f" behind {ahead} run(s)" if ahead else "")
          + f"; folder {run.run_dir}")
    if args.detach:
        print(f"follow it with 'gemma-panel runs logs {run.id} -f'; "
              f"cancel with 'gemma-panel runs cancel {run.id}'")
        return 0
    return follow(store, run.id)


def follow(store, run_id: str, out=None, poll: float = 0.5) -> int:
    """Print a run's progress until it ends; return its exit code. Ctrl-C cancels it."""
    from gemma_panel.runs import queue
    from gemma_panel.runs import statuses as st

    out = out or sys.stdout
    cursor = events = samples_seen = 0
    interrupted = False
    last_status = None
    while True:
        try:
            run = store.get(run_id)
            if run.status != last_status:
                last_status = run.status
                if run.status == st.RUNNING:
                    print(f"{run.id}: running" + (f" (attempt {run.attempt + 1})"
                                                  if run.attempt else ""), file=out, flush=True)
                elif run.status == st.QUEUED:
                    ahead = (queue.position(store, run.id) or 1) - 1
                    print(f"{run.id}: queued" + (f", {ahead} run(s) ahead" if ahead else ""),
                          file=out, flush=True)
            for event in store.events(run.id, since=events, kinds=["log", "checkpoint"]):
                events = event.seq
                text = event.message if event.kind == "log" else \
                    f"checkpoint at step {event.data.get('step')}: {event.message}"
                print(f"  {text}", file=out, flush=True)
            points = store.metrics(run.id, since=cursor)
            samples = store.samples(run.id, since=samples_seen)
            cursor = points[-1].seq if points else cursor
            samples_seen = samples[-1].seq if samples else samples_seen
            _progress_line(run, points, out, samples)
            if run.status in st.FINISHED:
                print(f"{run.id}: {run.status}" + (f": {run.message}" if run.message else ""),
                      file=out, flush=True)
                if run.status in (st.FAILED, st.LOST) and run.log_tail:
                    print("--- last lines of the log ---\n" + run.log_tail, file=out, flush=True)
                if run.status in st.RESUMABLE:
                    print(f"resume with 'gemma-panel runs resume {run.id}'", file=out)
                return st.exit_code(run.status)
            time.sleep(poll)
        except KeyboardInterrupt:
            if interrupted:
                print(f"\nstopped following {run_id}; it is being cancelled", file=out)
                return 130
            interrupted = True
            store.request_cancel(run_id)
            print(f"\ncancelling {run_id} at its next step (Ctrl-C again to stop following)",
                  file=out, flush=True)


def _progress_line(run, points, out, samples=()) -> None:
    """One line per step seen since the last poll (step/total, loss, tokens/s, ETA), each
    followed by the samples of an evaluation at that step."""
    by_step: dict[int, dict[str, float]] = {}
    for p in points:
        by_step.setdefault(p.step, {})[p.name] = p.value
    by_eval: dict[int, list] = {}
    for s in samples:
        by_eval.setdefault(s.step, []).append(s)
    for step in sorted(set(by_step) | set(by_eval)):
        values = by_step.get(step, {})
        parts = [f"step {step:>5}/{run.total_steps or '?'}"]
        for name, fmt in (("loss", "loss {:.4f}"), ("val_loss", "val_loss {:.4f}"),
                          ("tokens_per_s", "{:,.0f} tok/s")):
            if values.get(name) is not None:
                parts.append(fmt.format(values[name]))
        if values.get("eta_s") is not None:
            parts.append(f"ETA {_duration(values['eta_s'])}")
        if len(parts) > 1:
            print("  " + " | ".join(parts), file=out, flush=True)
        if step in by_eval:
            _sample_block(step, by_eval[step], out)


def _sample_block(step: int, samples, out, width: int = 100) -> None:
    """One evaluation's samples: each one's prompt, base, tuned and reference answer."""
    print(f"  samples at step {step}:", file=out)
    for s in sorted(samples, key=lambda s: (s.attempt, s.idx)):
        for label, text in (("prompt", s.prompt), ("base", s.base), ("tuned", s.tuned),
                            ("ref", s.reference)):
            if text or (text is not None and label != "ref"):
                print(f"    {label:<6}: {_one_line(text, width)}", file=out)
    out.flush()


def _one_line(text: str, width: int) -> str:
    """The text on one line (newlines shown as \\n), cut to ``width`` characters."""
    text = text.strip().replace("\n", "\\n")
    return text if len(text) <= width else text[:width - 4] + " ..."


def cmd_list(args) -> int:
    from gemma_panel.runs import recover

    store = _store()
    recover(store)  # notices dead workers; restarts the queue after a reboot
    runs = store.list_runs(args.status)
    if args.json:
        print(json.dumps([_run_dict(store, r) for r in runs], indent=2, default=str))
        return 0
    if not runs:
        print("no runs yet; start one with 'gemma-panel run recipes/quickstart.yaml'")
        return 0
    header = f"{'id':<28} {'status':<10} {'step':>11} {'loss':>8} {'created':<16} {'time':>8}"
    print(header)
    print("-" * len(header))
    for r in runs:
        loss = store.latest_metrics(r.id).get("loss")
        step = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        print(f"{r.id:<28} {r.status:<10} {step:>11} "
              f"{'-' if loss is None else f'{loss:.4f}':>8} {_when(r.created_at):<16} "
              f"{_duration(r.duration_s):>8}")
    return 0


def _run_dict(store, run) -> dict:
    data = {k: getattr(run, k) for k in run.__dataclass_fields__ if k != "recipe_yaml"}
    data["latest_metrics"] = store.latest_metrics(run.id)
    return data


def cmd_show(args) -> int:
    from gemma_panel.runs import statuses as st

    store = _store()
    run = store.get(args.run_id)
    if args.json:
        print(json.dumps(_run_dict(store, run) | {"recipe_yaml": run.recipe_yaml},
                         indent=2, default=str))
        return 0
    print(f"run      {run.id} ({run.name})")
    print(f"status   {run.status}" + (f": {run.message}" if run.message else ""))
    if run.cancel_requested and run.status == st.RUNNING:
        print("         cancel requested; it stops at its next step")
    print(f"progress step {run.step}" + (f" of {run.total_steps}" if run.total_steps else "")
          + f", {run.tokens:,} tokens" + (f", attempt {run.attempt + 1}" if run.attempt else ""))
    print(f"created  {_when(run.created_at)}; ran {_duration(run.duration_s)}")
    if run.checkpoint_step is not None:
        print(f"checkpoint step {run.checkpoint_step}: {run.checkpoint_path}")
    print(f"folder   {run.run_dir}")
    metrics = store.latest_metrics(run.id)
    if metrics:
        print("latest   " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())
                                      if v is not None))
    if run.log_tail:
        print("--- last lines of the log ---\n" + run.log_tail)
    if run.status in st.RESUMABLE:
        print(f"resume with 'gemma-panel runs resume {run.id}'")
    return 0


def cmd_logs(args) -> int:
    from gemma_panel.runs import statuses as st

    store = _store()
    run = store.get(args.run_id)
    path = store.folder(run.id).log_path
    if not path.exists():
        print(f"{run.id} has no log yet ({path})")
        return 0
    with path.open(errors="replace") as handle:
        lines = handle.readlines()
        sys.stdout.writelines(lines[-args.lines:] if args.lines else lines)
        sys.stdout.flush()
        while args.follow:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
                continue
            if store.get(run.id).status in st.FINISHED:
                sys.stdout.writelines(handle.readlines())
                break
            time.sleep(0.5)
    return 0


def cmd_cancel(args) -> int:
    from gemma_panel.runs import cancel
    from gemma_panel.runs import statuses as st

    store = _store()
    before = store.get(args.run_id)
    run = cancel(before.id, store)
    if before.status in st.FINISHED:
        print(f"{run.id} is {run.status}; nothing to cancel")
        return 0
    if run.status == st.CANCELLED:
        print(f"{run.id}: cancelled before it started")
        return 0
    print(f"{run.id}: cancel requested; it saves a checkpoint and stops at its next step")
    while args.wait and store.get(run.id).status not in st.FINISHED:
        time.sleep(0.5)
    if args.wait:
        print(f"{run.id}: {store.get(run.id).status}")
    return 0


def cmd_resume(args) -> int:
    from gemma_panel.runs import resume

    store = _store()
    run = resume(args.run_id, store, accept_changed_data=args.accept_changed_data)
    for event in store.events(run.id, kinds=["data_changed"]):
        if event.attempt == run.attempt:
            print(f"run {run.id}: {event.message}")
    print(f"run {run.id} queued again (attempt {run.attempt + 1}); it continues from "
          + (f"step {run.checkpoint_step}" if run.checkpoint_step is not None
             else "the start (no checkpoint was saved)"))
    return 0 if args.detach else follow(store, run.id)


def cmd_delete(args) -> int:
    store = _store()
    runs = [store.get(r) for r in args.run_ids]
    for run in runs:
        print(f"{run.id}  {run.status:<10} {run.run_dir}")
    if not args.yes:
        try:
            answer = input(f"delete {len(runs)} run(s), their metrics, checkpoints and "
                           "exports? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for run in runs:
        store.delete(run.id)
        print(f"deleted {run.id}")
    return 0


def cmd_compare(args) -> int:
    from gemma_panel.runs import compare_runs

    cmp = compare_runs(_store(), args.run_ids, x=args.by)
    if args.json:
        print(json.dumps({"x": cmp.x, "runs": [r.id for r in cmp.runs], "table": cmp.table,
                          "recipe_fields": cmp.recipe_fields, "curves": cmp.curves,
                          "samples": cmp.samples}, indent=2, default=str))
    else:
        print(cmp.to_text())
    return 0


def cmd_parallel(args) -> int:
    store = _store()
    if args.n is not None:
        try:
            store.set_max_parallel(args.n)
        except ValueError as exc:
            print(f"gemma-panel: {exc}", file=sys.stderr)
            return 2
    print(f"{store.max_parallel} run(s) train at once; others wait in the queue")
    return 0


def cmd_worker(args) -> int:
    from gemma_panel.runs.worker import redirect_output, run_worker

    store = _store(args)
    run = store.get(args.run_id)
    if not args.foreground:
        log = store.folder(run.id).log_path
        print(f"worker for {run.id}: writing to {log}", file=sys.stderr)
        redirect_output(log)
    return run_worker(run.id, store)


def main(argv: list[str] | None = None) -> int:
    """The run commands on their own (``python -m gemma_panel.runs ...``)."""
    parser = argparse.ArgumentParser(prog="python -m gemma_panel.runs")
    add_run_commands(parser.add_subparsers(dest="command", required=True))
    from gemma_panel.cli import run_command  # the one error boundary

    return run_command(parser.parse_args(argv))
