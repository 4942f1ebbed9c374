"""The Train tab's state: every run in the store, one selected, its history and what is new.

Nothing here trains: ``start`` queues a run whose worker process does the training (see
``gemma_panel.runs.queue``); this model only reads the store. Because everything is read
from the store, a refreshed page, a second tab or a restarted server finds every run with
its whole history.

Example:
    >>> runs = RunsModel(RunStore())
    >>> runs.start(load_recipe("recipes/quickstart.yaml", ["train.max_steps=20"]))
    >>> runs.jobs.wait(); runs.selected            # the new run
    'quickstart-3f9a2c'
    >>> kind, data = runs.feed.poll()             # ("reset", full history), then ("append", new)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import param

from gemma_panel.config import Recipe, RecipeError
from gemma_panel.data.preflight import Verdict, preflight
from gemma_panel.data.tfds_reader import is_tfds_source
from gemma_panel.errors import UserError
from gemma_panel.runs import DEFAULT_TRAINER, RunNotFound, RunStore, submit
from gemma_panel.runs import cancel as cancel_run
from gemma_panel.runs import resume as resume_run
from gemma_panel.runs import statuses as st
from gemma_panel.runs.compare import current_points
from gemma_panel.runs.folder import resolve_paths
from gemma_panel.runs.queue import position

from .data_checks import load_tokenizer
from .jobs import Jobs
from .outputs import write, writes
from .run_editing import RunEditing
from .server_paths import confine_data_path

# Chart name -> the series drawn on it. "perplexity" of training is exp(loss), computed
# here; the trainer records validation perplexity itself.
CHARTS: dict[str, tuple[str, ...]] = {
    "loss": ("loss", "val_loss"),
    "perplexity": ("perplexity", "val_perplexity"),
    "learning_rate": ("learning_rate",),
    "tokens_per_s": ("tokens_per_s",),
    # At each evaluation: validation token accuracy, and the task's generation metrics
    # (classification: accuracy, macro-F1; instruction: exact match, token F1).
    "evaluation": ("val_token_accuracy", "accuracy", "macro_f1", "exact_match", "token_f1"),
}
SERIES = tuple(s for names in CHARTS.values() for s in names)
COLUMNS = ("step", "tokens", "value", "time")


def empty_series() -> dict[str, dict[str, list]]:
    return {name: {c: [] for c in COLUMNS} for name in SERIES}


def _add(out: dict, name: str, p, value: float) -> None:
    col = out[name]
    col["step"].append(p.step)
    col["tokens"].append(p.tokens)
    col["value"].append(value)
    col["time"].append(p.time)


class MetricFeed:
    """What a chart needs from one run: its whole history once, then only new points.

    ``poll()`` returns ``("reset", series)`` the first time and whenever history changed
    under it (a resumed run re-does steps), else ``("append", series)`` with the points
    recorded since the last call; ``series[name]`` has the columns step, tokens, value and
    time (when the worker recorded it; the benchmark measures latency from it).
    """

    def __init__(self, store: RunStore, run_id: str | None):
        self.store, self.run_id = store, run_id
        self.cursor, self.attempt, self.last_step = 0, -1, -1
        self.eta_s: float | None = None  # the newest ETA the trainer recorded
        self._reset_needed = True

    def poll(self) -> tuple[str, dict[str, dict[str, list]]]:
        if self.run_id is None:
            return "reset" if self._reset_needed else "append", empty_series()
        if self._reset_needed:
            return "reset", self._history()
        points = self.store.metrics(self.run_id, since=self.cursor, names=_STORED)
        if not points:
            return "append", empty_series()
        if any(p.attempt > self.attempt and p.step <= self.last_step for p in points):
            return "reset", self._history()  # a resume re-did steps: redraw from the store
        self._advance(points)
        return "append", _series(points)

    def _history(self) -> dict[str, dict[str, list]]:
        self._reset_needed = False
        points = self.store.metrics(self.run_id, names=_STORED)
        self._advance(points)
        kept = sorted(current_points(points), key=lambda p: (p.step, p.seq))
        return _series(kept)

    def _advance(self, points) -> None:
        for p in reversed(points):
            if p.name == "eta_s":
                self.eta_s = p.value
                break
        if points:
            self.cursor = max(self.cursor, points[-1].seq)
            self.attempt = max(self.attempt, max(p.attempt for p in points))
            self.last_step = max(self.last_step, max(p.step for p in points))


_STORED = [s for s in SERIES if s != "perplexity"] + ["eta_s"]


def _series(points) -> dict[str, dict[str, list]]:
    out = empty_series()
    for p in points:
        if p.value is None or p.name not in out:
            continue
        _add(out, p.name, p, p.value)
        if p.name == "loss":
            _add(out, "perplexity", p, math.exp(min(p.value, 50.0)))
    return out


# Vertex AI jobs are polled this often while one is queued or running (one API call each).
REMOTE_POLL_S = 30.0


class RunsModel(RunEditing):
    """Every run, the selected one's status, samples and log; start, cancel, resume; the
    list's filters, a run's name, notes and tags, and delete (``run_editing.py``)."""

    selected = param.Selector(default=None, objects=[None], allow_None=True)
    # What the store says: read-only outside the model (see outputs.py).
    runs = param.List(default=[], constant=True, doc="One dict per run, newest first.")
    status = param.String(default="", constant=True)
    message = param.String(default="", constant=True,
                           doc="Why the run ended as it did, in words.")
    progress = param.Number(default=0.0, bounds=(0, 1), constant=True)
    step_text = param.String(default="", constant=True)
    eta_text = param.String(default="", constant=True)
    samples = param.List(default=[], constant=True,
                         doc="Sample generations: step, prompt, base, tuned.")
    log_tail = param.String(default="", constant=True)
    notice = param.String(default="", constant=True,
                          doc="The outcome of the last button press.")
    can_cancel = param.Boolean(default=False, constant=True)
    can_resume = param.Boolean(default=False, constant=True)

    def __init__(self, store: RunStore | None = None, *, trainer: str = DEFAULT_TRAINER,
                 jobs: Jobs | None = None, check_tokens: bool | None = None, **params):
        super().__init__(**params)
        self.store = store or RunStore()
        self.trainer = trainer
        # Start measures token lengths with the model's tokenizer, as the trainer will; a
        # stand-in trainer (tests) tokenizes nothing, so by default its runs are not.
        self.check_tokens = trainer == DEFAULT_TRAINER if check_tokens is None else check_tokens
        self.jobs = jobs or Jobs()
        self._last_remote = -float("inf")
        self.feed = MetricFeed(self.store, None)
        self._sample_cursor = 0
        self.refresh_choices()
        self.refresh_runs()
        active = [r for r in self.runs if r["status"] in st.ACTIVE]
        if self.runs:  # reattach: the newest active run, else the newest run
            self.selected = (active or self.runs)[0]["id"]

    # -- the list of runs -----------------------------------------------------------------
    def poll_remote(self, every_s: float = REMOTE_POLL_S) -> None:
        """Ask the cloud about active remote runs (Vertex AI jobs), off the page's thread and
        at most every ``every_s`` seconds (each poll is an API call per job)."""
        now = time.monotonic()
        if now - self._last_remote < every_s or "remote-poll" in self.jobs.running:
            return
        if not any(r.remote and r.status.active for r in self.store.list_runs()):
            return
        self._last_remote = now
        from gemma_panel.runs.remote import poll

        def done(problems) -> None:
            if problems:
                write(self, notice="; ".join(p.message for p in problems))

        self.jobs.submit("remote-poll", lambda: poll(self.store), done, self._failed)

    @writes
    def refresh_runs(self) -> None:
        rows = []
        for run in self.store.list_runs(**self.list_filters()):
            rows.append({"id": run.id, "name": run.name, "status": run.status,
                         "step": run.step, "total_steps": run.total_steps,
                         "tokens": run.tokens, "attempt": run.attempt,
                         "tags": ", ".join(run.tags), "model": run.model,
                         "created": time.strftime("%Y-%m-%d %H:%M:%S",
                                                  time.localtime(run.created_at))})
        self.runs = rows
        ids = [r["id"] for r in rows]
        self.param.selected.objects = [None, *ids]
        if self.selected not in (None, *ids):
            self.selected = None

    @param.depends("selected", watch=True)
    @writes
    def _select(self) -> None:
        self.feed = MetricFeed(self.store, self.selected)
        self._sample_cursor = 0
        self.samples = []
        self.refresh_status()
        try:
            self.load_labels(self.store.get(self.selected) if self.selected else None)
        except RunNotFound:
            self.load_labels(None)

    # -- the selected run -------------------------------------------------------------------
    @writes
    def refresh_status(self) -> None:
        """Status, cause, progress, ETA, new samples and the log tail of the selected run."""
        if self.selected is None:
            self.status = self.message = self.step_text = self.eta_text = self.log_tail = ""
            self.progress, self.can_cancel, self.can_resume = 0.0, False, False
            return
        try:
            run = self.store.get(self.selected)
        except RunNotFound:
            self.selected = None
            return
        with param.parameterized.batch_call_watchers(self):
            if self.status and run.status != self.status:
                self.notice = ""  # the last button's outcome is now told by the status
            self.status = run.status
            self.message = run.message or _waiting(self.store, run)
            total = run.total_steps
            self.progress = run.progress or 0.0
            self.step_text = f"step {run.step}/{total}" if total else f"step {run.step}"
            self.eta_text = _eta(run, self.feed.eta_s)
            self.can_cancel = (run.status in st.ACTIVE and not run.cancel_requested
                               and f"cancel:{run.id}" not in self.jobs.running)
            self.can_resume = run.status in st.RESUMABLE
            new = self.store.samples(run.id, since=self._sample_cursor)
            if new:
                self._sample_cursor = new[-1].seq
                self.samples = self.samples + [
                    {"step": s.step, "prompt": s.prompt, "reference": s.reference,
                     "base": s.base, "tuned": s.tuned} for s in new]
            tail = run.log_tail if run.status in (st.FAILED, st.LOST) and run.log_tail \
                else self.store.folder(run.id).log_tail(20)
            self.log_tail = tail
        listed = next((r for r in self.runs if r["id"] == run.id), None)
        if listed is not None and listed["status"] != run.status:
            self.refresh_runs()  # the list and the run picker show the new status at once

    # -- buttons ------------------------------------------------------------------------------
    def start_edited(self, recipe_of: Callable[[], Recipe]) -> None:
        """Start a run of the recipe ``recipe_of()`` builds (the Configure tab's); one that
        does not validate is not started, and ``notice`` says what to fix."""
        try:
            recipe = recipe_of()
        except RecipeError as exc:
            write(self, notice="Fix the recipe first (Configure tab): " + "; ".join(exc.problems))
            return
        self.start(recipe)

    @writes
    def start(self, recipe: Recipe, cwd: str | None = None) -> None:
        """Check the recipe's data as the run will prepare it; queue the run if it passes.

        A recipe whose data would fail preparation is refused (``notice`` says why and
        what to change); no run is created.
        """
        def queue():
            # Relative data paths are read from where the run is submitted from; a typed
            # path outside the data roots is refused as it is on the Data tab.
            resolved = resolve_paths(recipe, Path(cwd) if cwd else None)
            for key in ("train_path", "validation_path"):
                value = getattr(resolved.data, key)
                if value and "://" not in value and not is_tfds_source(value):
                    confine_data_path(value)
            tokenizer = load_tokenizer(recipe.model.source) if self.check_tokens else None
            verdict = preflight(resolved, tokenizer)
            if not verdict.ok:
                return verdict
            return submit(recipe, self.store, trainer=self.trainer, cwd=cwd)

        def queued(run):
            if isinstance(run, Verdict):  # refused by the data check
                write(self, notice=f"Not started: {run.message}")
                return
            self.refresh_runs()
            self.selected = run.id
            write(self, notice=f"Queued {run.id}; its worker process is starting.")

        self.notice = f"Checking the data of {recipe.name}, then queuing it ..."
        self.jobs.submit("start", queue, queued, self._failed)

    @writes
    def cancel(self) -> None:
        if self.selected is None:
            return
        run_id = self.selected
        if self.store.get(run_id).remote:  # Vertex AI's cancel call: off the page's thread
            self.can_cancel, self.notice = False, f"Cancelling the job of {run_id} ..."
            self.jobs.submit(f"cancel:{run_id}", lambda: cancel_run(run_id, self.store),
                             self._cancelled, self._failed)
            return
        self._cancelled(cancel_run(run_id, self.store))

    @writes
    def _cancelled(self, run) -> None:
        self.notice = (f"Cancelled {run.id}." if run.status == st.CANCELLED else
                       f"Cancel requested: {run.id} saves a checkpoint and stops at its "
                       "next step.")
        self.refresh_runs()
        self.refresh_status()

    def resume(self) -> None:
        if self.selected is None:
            return
        run_id = self.selected

        def resumed(run):
            self.feed = MetricFeed(self.store, run.id)  # the resume re-does some steps
            self.refresh_runs()
            self.refresh_status()
            write(self, notice=f"Resuming {run.id} from its last checkpoint "
                               f"(attempt {run.attempt}).")

        self.jobs.submit("resume", lambda: resume_run(run_id, self.store), resumed,
                         self._failed)

    @writes
    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, UserError):  # Jobs hands a user error over as one
            self.notice = str(exc)
        else:
            self.notice = f"{type(exc).__name__}: {exc}"


def _waiting(store: RunStore, run) -> str:
    if run.cancel_requested:
        return "cancel requested: it saves a checkpoint and stops at its next step"
    if run.status == st.QUEUED:
        ahead = (position(store, run.id) or 1) - 1
        return (f"queued: {ahead} run(s) ahead of it" if ahead else
                "queued: next to start; its worker is loading")
    return ""


def _eta(run, eta: float | None) -> str:
    if run.status != st.RUNNING:
        if run.duration_s is not None and run.status in st.FINISHED:
            return f"took {_duration(run.duration_s)}"
        return ""
    return f"ETA {_duration(eta)}" if eta is not None else "ETA: after the first steps"


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
