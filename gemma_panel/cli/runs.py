"""``gemma-panel validate`` / ``run`` / ``runs ...`` / ``worker``: recipes and the run store
from the command line.

    gemma-panel validate RECIPE [SECTION.FIELD=VALUE ...] [--show]
    gemma-panel run RECIPE [SECTION.FIELD=VALUE ...] [--detach] [--run-folder gs://...]
    gemma-panel runs list [--status S] [--tag T] [--model M] | show ID | logs ID [-f]
    gemma-panel runs cancel ID | resume ID | delete ID ... [--yes] [--cancel]
    gemma-panel runs rename ID NAME | note ID TEXT | tag ID TAG ... (see cli/run_labels.py)
    gemma-panel runs compare ID ID ... [--by tokens] | parallel [N]
    gemma-panel worker RUN_ID

Run ids may be shortened to any unique prefix. Without ``--detach``, ``run`` and ``runs
resume`` follow the run and exit with its status: 0 succeeded, 1 failed, 3 cancelled,
4 lost (2: the command itself was wrong). Ctrl-C while following cancels the run (it saves a
checkpoint and can be resumed); a second Ctrl-C stops following.
"""

from __future__ import annotations

import json
import sys
import time

from gemma_panel.cli.follow import follow
from gemma_panel.cli.format import duration, when
from gemma_panel.cli.run_labels import add_label_commands
from gemma_panel.runs.worker import add_worker_arguments, work


def add_recipe_commands(sub) -> None:
    """Register ``validate`` on an argparse subparsers object."""
    validate = sub.add_parser("validate", help="check a recipe without building anything")
    validate.add_argument("recipe", help="a YAML recipe, e.g. recipes/quickstart.yaml")
    validate.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE")
    validate.add_argument("--show", action="store_true",
                          help="print the resolved recipe with every field explained")
    validate.set_defaults(func=cmd_validate)


def add_run_commands(sub) -> None:
    """Register ``run``, ``runs`` and ``worker`` on an argparse subparsers object."""
    run = sub.add_parser("run", help="queue a training run from a recipe and follow it")
    run.add_argument("recipe", help="a YAML recipe, e.g. recipes/quickstart.yaml")
    run.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE",
                     help="override recipe fields, e.g. train.learning_rate=1e-4")
    run.add_argument("--detach", action="store_true",
                     help="print the run id and return; the run goes on in the background")
    run.add_argument("--run-folder", metavar="gs://BUCKET/PATH",
                     help="keep a copy of the run folder there (metrics, samples, "
                          "checkpoints), and go on from the last checkpoint already there: "
                          "what a Vertex AI job's restarted replica does")
    run.add_argument("--trainer", metavar="MODULE:FUNCTION",
                     help="a custom training function with gemma_panel.training.train's "
                          "signature (default: that one)")
    run.set_defaults(func=cmd_run)
    _add_runs_group(sub)
    worker = sub.add_parser("worker", help="train one run (the queue starts this for you)")
    add_worker_arguments(worker)  # the options of python -m gemma_panel.runs.worker
    worker.set_defaults(func=cmd_worker)


def _add_runs_group(sub) -> None:
    """``runs list | show | logs | cancel | resume | delete | compare | parallel`` and the
    labels (``run_labels``)."""
    runs = sub.add_parser("runs", help="list, inspect, cancel, resume, compare, delete, "
                                       "rename and tag runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", help="every run, newest first")
    listing.add_argument("--status", help="only runs with this status")
    listing.add_argument("--tag", help="only runs tagged TAG (see 'runs tag')")
    listing.add_argument("--model", help="only runs whose model source contains this")
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
    delete.add_argument("--cancel", action="store_true",
                        help="cancel a queued or running run first, then delete it")
    delete.set_defaults(func=cmd_delete)
    compare = runs_sub.add_parser("compare", help="metrics, differing settings, samples")
    compare.add_argument("run_ids", nargs="+")
    compare.add_argument("--by", choices=["step", "tokens"], default="step")
    compare.add_argument("--json", action="store_true", help="curves and all, as JSON")
    compare.set_defaults(func=cmd_compare)
    parallel = runs_sub.add_parser("parallel", help="show or set how many runs train at once")
    parallel.add_argument("n", type=int, nargs="?")
    parallel.set_defaults(func=cmd_parallel)
    add_label_commands(runs_sub)


def _store(args=None):
    from gemma_panel.runs import RunStore

    return RunStore(getattr(args, "store", None))


def _poll_jobs(store, run_ids=None) -> None:
    """Bring runs that Vertex AI jobs train up to date; say on stderr which could not be."""
    from gemma_panel.runs.remote import poll

    for problem in poll(store, run_ids):
        print(f"warning: {problem.message}", file=sys.stderr)


def cmd_validate(args) -> int:
    from gemma_panel.config import load_recipe, recipe_to_yaml

    recipe = load_recipe(args.recipe, args.overrides)
    if args.show:
        print(recipe_to_yaml(recipe), end="")
    print(f"{args.recipe}: valid ({recipe.name}: {recipe.model.source}, "
          f"{recipe.data.train_path})")
    return 0


def cmd_run(args) -> int:
    from gemma_panel.config import load_recipe
    from gemma_panel.runs import DEFAULT_TRAINER, queue, submit

    recipe = load_recipe(args.recipe, args.overrides)
    store = _store()
    run = submit(recipe, store, trainer=args.trainer or DEFAULT_TRAINER,
                 remote_dir=args.run_folder)
    ahead = (queue.position(store, run.id) or 1) - 1
    print(f"run {run.id} queued" + (f" behind {ahead} run(s)" if ahead else "")
          + f"; folder {run.run_dir}")
    if args.detach:
        print(f"follow it with 'gemma-panel runs logs {run.id} -f'; "
              f"cancel with 'gemma-panel runs cancel {run.id}'")
        return 0
    return follow(store, run.id)


def cmd_list(args) -> int:
    from gemma_panel.runs import recover

    store = _store()
    recover(store)  # notices dead workers; restarts the queue after a reboot
    _poll_jobs(store)
    runs = store.list_runs(args.status, tag=args.tag, model=args.model)
    if args.json:
        print(json.dumps([_run_dict(store, r) for r in runs], indent=2, default=str))
        return 0
    if not runs:
        filtered = args.status or args.tag or args.model
        print("no runs match; 'gemma-panel runs list' shows them all" if filtered else
              "no runs yet; start one with 'gemma-panel run recipes/quickstart.yaml'")
        return 0
    header = (f"{'id':<28} {'status':<10} {'step':>11} {'loss':>8} {'created':<16} "
              f"{'time':>8}  name [tags]")
    print(header)
    print("-" * len(header))
    for r in runs:
        loss = store.latest_metrics(r.id).get("loss")
        step = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        print(f"{r.id:<28} {r.status:<10} {step:>11} "
              f"{'-' if loss is None else f'{loss:.4f}':>8} {when(r.created_at):<16} "
              f"{duration(r.duration_s):>8}  {r.name}"
              + (f" [{', '.join(r.tags)}]" if r.tags else ""))
    return 0


def _run_dict(store, run) -> dict:
    data = {k: getattr(run, k) for k in run.__dataclass_fields__ if k != "recipe_yaml"}
    data["latest_metrics"] = store.latest_metrics(run.id)
    return data


def cmd_show(args) -> int:
    from gemma_panel.runs import statuses as st

    store = _store()
    run = store.get(args.run_id)
    if run.remote:
        _poll_jobs(store, [run.id])
        run = store.get(run.id)
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
    print(f"created  {when(run.created_at)}; ran {duration(run.duration_s)}")
    if run.checkpoint_step is not None:
        print(f"checkpoint step {run.checkpoint_step}: {run.checkpoint_path}")
    print(f"folder   {run.run_dir}")
    if run.tags:
        print(f"tags     {', '.join(run.tags)}")
    if run.notes:
        print("notes    " + run.notes.replace("\n", "\n         "))
    if run.remote:
        print(f"job      {run.job_name} ({run.backend})")
    if run.remote_dir:
        print(f"copy     {run.remote_dir}")
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
        print(f"{run.id}: cancelled" + (f" ({run.message})" if run.remote else
                                         " before it started"))
        return 0
    if run.remote:
        print(f"{run.id}: cancel sent to {run.job_name}; 'gemma-panel runs show {run.id}' "
              "says when Vertex AI has stopped it")
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
    from gemma_panel.runs import RunStateError, delete_run

    store = _store()
    runs = [store.get(r) for r in args.run_ids]
    active = [r.id for r in runs if r.status.active]
    if active and not args.cancel:  # refused before anything is asked or deleted
        raise RunStateError(f"run {active[0]} is {store.get(active[0]).status}; cancel it "
                            f"first ('gemma-panel runs cancel {active[0]}'), or add --cancel "
                            "to cancel and then delete it")
    for run in runs:
        print(f"{run.id}  {run.status:<10} {run.run_dir}")
    if not args.yes:
        cancel = f" ({len(active)} cancelled first)" if active else ""
        try:
            answer = input(f"delete {len(runs)} run(s){cancel}, their metrics, checkpoints "
                           "and exports? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for run in runs:
        if run.id in active:
            print(f"{run.id}: cancelling; it stops at its next step ...")
        delete_run(run.id, store, cancel=args.cancel)
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
    return work(args.run_id, args.store, args.foreground)
