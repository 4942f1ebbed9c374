"""The "Run on Vertex AI" panel's state: the Configure tab's recipe as a Vertex AI custom job.

Two steps, as ``gemma-panel cloud submit`` takes them: ``show_plan`` checks what can be
refused before any job exists (data on this machine, no project, no bucket, a bucket this
identity cannot read or write), then shows the job's memory fit, time and cost from
``cloud.estimate.job_estimate`` (the function the CLI prints) and the CustomJob that would be
sent (``cloud.vertex.custom_job``); ``confirm`` submits exactly that job
(``runs.remote.submit_vertex``, as the CLI does). The submitted job is a run in the Train
tab's list, where cancel cancels the job.

Example:
    >>> vertex = VertexModel(runs, config)
    >>> vertex.param.update(accelerator="l4", project="p1", output="gs://b/jobs")
    >>> vertex.show_plan(); vertex.jobs.wait(); vertex.plan_lines[0]
    'estimate for l4 (1 x l4 ...), on-demand:'
    >>> vertex.confirm(); vertex.jobs.wait(); runs.selected   # the job's run
"""

from __future__ import annotations

import dataclasses
import os

import param

from gemma_panel.cloud.vertex import ACCELERATORS, DEFAULT_REGION, JobOptions
from gemma_panel.config import Recipe, RecipeError
from gemma_panel.errors import UserError

from .outputs import write, writing

OUTPUT_ENV = "GEMMA_PANEL_CLOUD_OUTPUT"  # as ``cloud submit --output`` defaults to
_SETTINGS = ("accelerator", "replicas", "spot", "region", "project", "output", "job_id")


@dataclasses.dataclass(frozen=True)
class PlannedJob:
    """What the plan showed, and what ``confirm`` sends: the recipe, the options (the job
    id fixed, so the job's folder is the one shown) and the estimate."""

    recipe: Recipe
    options: JobOptions
    folder: str
    estimate: object  # cloud.estimate.JobEstimate
    identity: str


class VertexModel(param.Parameterized):
    """The job's settings (bound to the panel's widgets), its plan, and submit-on-confirm.

    Args:
        runs: the Train tab's ``RunsModel`` (its store, its jobs; the new run is listed and
            selected there).
        config: the Configure tab's ``ConfigModel``, whose recipe the job trains.
    """

    accelerator = param.Selector(objects=list(ACCELERATORS), default="tpu-v5e-4")
    replicas = param.Integer(default=1, bounds=(1, None), doc=(
        "GPU machines, each running the same command (a TPU job is one slice: 1)."))
    spot = param.Boolean(default=False, doc="Spot capacity: cheaper, may be preempted.")
    region = param.String(default=DEFAULT_REGION)
    project = param.String(default="", doc="Default: $GOOGLE_CLOUD_PROJECT.")
    output = param.String(default="", doc="gs://BUCKET/PATH under which each job gets a "
                                          "folder (default: $GEMMA_PANEL_CLOUD_OUTPUT, else "
                                          "the recipe's train.storage).")
    job_id = param.String(default="", doc="The job folder's name (default: recipe + time).")
    # Outputs: read-only outside the model.
    plan_lines = param.List(default=[], constant=True, doc="The estimate, as the CLI prints it.")
    fit = param.Dict(default={}, constant=True, doc="The memory verdict and GiB per device.")
    cost_usd = param.Number(default=None, allow_None=True, constant=True)
    job_json = param.String(default="", constant=True, doc="The CustomJob that would be sent.")
    can_submit = param.Boolean(default=False, constant=True)
    busy = param.Boolean(default=False, constant=True)
    status = param.String(default="", constant=True)
    submitted = param.String(default="", constant=True, doc="The id of the last job's run.")

    def __init__(self, runs, config, **params):
        params.setdefault("project", os.environ.get("GOOGLE_CLOUD_PROJECT", ""))
        params.setdefault("output", os.environ.get(OUTPUT_ENV, ""))
        super().__init__(**params)
        self.runs, self.config, self.jobs = runs, config, runs.jobs
        self.planned: PlannedJob | None = None
        self._asked = 0  # which plan is wanted: one asked before a change is not shown
        # An edit in the Configure tab changes the job too: its plan must be shown again.
        config.param.watch(lambda _: self.forget_plan(), ["settings"])

    # -- step 1: the plan ------------------------------------------------------------------
    def show_plan(self) -> None:
        """Check the job and estimate it in the background; ``confirm`` is then allowed."""
        self.planned = None
        self._asked += 1
        asked = self._asked
        try:
            recipe = self.config.recipe()
            options = self.options(recipe)
        except RecipeError as exc:
            write(self, status="Fix the recipe first (Configure tab): " + "; ".join(exc.problems))
            return
        except UserError as exc:
            write(self, can_submit=False, status=str(exc))
            return
        write(self, busy=True, can_submit=False, status="Checking the job and estimating it ...")
        self.jobs.submit("vertex-plan", lambda: plan_job(recipe, options),
                         lambda planned: self._planned(planned, asked),
                         lambda exc: self._failed(exc, asked))

    def options(self, recipe: Recipe) -> JobOptions:
        """The job options of the settings, as ``cloud submit`` builds them from its flags."""
        output = (self.output.strip() or os.environ.get(OUTPUT_ENV) or recipe.train.storage
                  or "")
        if not output:
            raise UserError("no bucket for the job: enter a gs://BUCKET/PATH under 'Job "
                            f"folders on' (or set {OUTPUT_ENV}, or train.storage in the "
                            "recipe); each job gets a folder below it.")
        if not (self.project.strip() or os.environ.get("GOOGLE_CLOUD_PROJECT")):
            raise UserError("no Google Cloud project for the job: enter it under 'Project' "
                            "(or set GOOGLE_CLOUD_PROJECT before starting the dashboard).")
        return JobOptions(accelerator=self.accelerator, output=output, spot=self.spot,
                          region=self.region.strip() or DEFAULT_REGION,
                          project=self.project.strip() or None,
                          job_id=self.job_id.strip() or None, replicas=self.replicas)

    def _planned(self, planned: PlannedJob, asked: int) -> None:
        from gemma_panel.cloud.vertex import custom_job, to_json

        if asked != self._asked:  # a setting changed while it was made: not this job's plan
            write(self, busy="vertex-plan" in self.jobs.running)
            return
        self.planned = planned
        e = planned.estimate
        m = e.memory
        fit = {} if m is None else {"badge": m.badge, "text": e.memory_text()}
        with writing(self):
            self.plan_lines, self.fit = e.lines(), fit
            self.cost_usd = e.cost.usd if e.cost is not None else None
            self.job_json = to_json(custom_job(planned.recipe, planned.options, planned.folder))
            self.busy, self.can_submit = False, True
            self.status = (f"Nothing is sent yet. Confirm to submit this job to "
                           f"projects/{planned.options.project}/locations/"
                           f"{planned.options.region} as {planned.identity}; its folder "
                           f"will be {planned.folder}.")

    @param.depends(*_SETTINGS, watch=True)
    def forget_plan(self) -> None:
        """A setting changed: the plan shown is not the job's any more."""
        self._asked += 1
        if self.planned is None and not self.plan_lines:
            return
        self.planned = None
        write(self, can_submit=False, plan_lines=[], fit={}, cost_usd=None, job_json="",
              status="The settings changed: show the plan again before submitting.")

    # -- step 2: confirm -------------------------------------------------------------------
    def confirm(self) -> None:
        """Submit the planned job (nothing happens without a plan shown for these settings)."""
        planned = self.planned
        if planned is None or not self.can_submit:
            write(self, status="Show the plan first: nothing is submitted before you have "
                               "seen its cost.")
            return
        from gemma_panel.runs.remote import submit_vertex

        write(self, busy=True, can_submit=False, status="Submitting the job ...")
        self.jobs.submit("vertex-submit",
                         lambda: submit_vertex(planned.recipe, planned.options, self.runs.store),
                         self._submitted, self._failed)

    def _submitted(self, run) -> None:
        self.planned = None
        write(self, busy=False, submitted=run.id, status=(
            f"Submitted {run.job_name} as run {run.id}: it is in the Train tab's list, "
            "where its status follows the job's and Cancel cancels the job."))
        self.runs.refresh_runs()
        self.runs.selected = run.id

    def _failed(self, exc: BaseException, asked: int | None = None) -> None:
        """A refusal or a failed call: its sentence; the plan must be shown again."""
        from gemma_panel.cloud.vertex import api_error

        if asked is not None and asked != self._asked:  # the settings changed since
            write(self, busy="vertex-plan" in self.jobs.running)
            return
        said = exc if isinstance(exc, UserError) else api_error(exc)
        self.planned = None
        write(self, busy=False, can_submit=False,
              status=str(said) if said is not None else f"{type(exc).__name__}: {exc}")


def plan_job(recipe: Recipe, options: JobOptions) -> PlannedJob:
    """What ``cloud submit`` checks and estimates before it asks, for the panel's plan; the
    bucket's access (``gcs.preflight``, which submit repeats) is checked here too, so a
    missing bucket is said before the user confirms."""
    from gemma_panel.cloud import gcs, vertex
    from gemma_panel.cloud.estimate import job_estimate
    from gemma_panel.planning.prices import load_prices

    project = vertex.check_submittable(recipe, options)
    reads = [p for p in (recipe.data.train_path, recipe.data.validation_path) if p]
    identity = gcs.preflight(reads, writes=[options.output])
    folder = vertex.job_folder(recipe, options)
    options = dataclasses.replace(options, project=project,
                                  job_id=folder.rsplit("/", 1)[-1])
    estimate = job_estimate(recipe, options.accelerator, options.spot, load_prices(None),
                            options.replicas)
    return PlannedJob(recipe, options, folder, estimate, identity)
