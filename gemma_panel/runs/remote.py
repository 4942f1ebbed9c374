"""Runs that a Vertex AI job trains: submitted, polled and cancelled through the run store.

A job submitted with ``submit_vertex`` is a run like any other (``backend`` "vertex", the
job's resource name in ``job_name``), except that no worker here takes it: its status
follows the job's, read by ``poll`` (``gemma-panel runs list`` and ``runs show`` call it; so
can the dashboard's refresh), and ``runs.cancel`` sends the job's cancel call.

    run = submit_vertex(recipe, JobOptions("tpu-v5e-4", "gs://bucket/jobs", spot=True))
    poll(store)          # queued/running/succeeded/failed/cancelled, as the job is
    cancel(run.id)       # Vertex AI cancels the job; the next poll records cancelled
"""

from __future__ import annotations

from dataclasses import dataclass

from . import statuses as st
from .records import Run
from .store import RunStore

VERTEX = "vertex"


@dataclass(frozen=True)
class PollProblem:
    """A job whose state could not be read this time (the network, a deleted job)."""

    run_id: str
    message: str


def submit_vertex(recipe, options, store: RunStore | None = None, *, client=None,
                  storage_client=None) -> Run:
    """Submit ``recipe`` as a Vertex AI custom job (``cloud.vertex.submit``) and record it as a
    ``queued`` run whose folder copy is the job's folder on Cloud Storage."""
    from gemma_panel.cloud import vertex
    from gemma_panel.config import recipe_to_yaml

    store = store or RunStore()
    name, folder = vertex.submit(recipe, recipe_to_yaml(recipe), options, client=client,
                                 storage_client=storage_client)
    return store.create_remote_run(recipe, backend=VERTEX, job_name=name, remote_dir=folder)


def poll(store: RunStore, run_ids: list[str] | None = None, *, client=None
         ) -> list[PollProblem]:
    """Bring every queued or running remote run (or those of ``run_ids``) up to date with its
    job: its status, and what its folder on Cloud Storage holds (metrics, samples,
    checkpoints; the worker log and the exports' manifests into the local folder).

    Returns the runs whose job could not be read; their status stays as it was.
    """
    runs = [r for r in (store.list_runs() if run_ids is None else
                        [store.get(i) for i in run_ids]) if r.remote and r.status.active]
    problems = []
    unreadable = _reading_errors() if runs else ()
    for run in runs:
        try:
            status, message = job_status(run, client=client)
            if run.remote_dir:  # its metrics first: a run that ended has all of them
                from .mirror import read_back

                read_back(store, run)
            store.follow_job(run.id, st.RunStatus(status), message)
        except unreadable as exc:  # one unreachable job must not hide the others
            problems.append(PollProblem(run.id, _why(run, exc)))
    return problems


def job_status(run: Run, *, client=None) -> tuple[str, str | None]:
    """(our status, the cause in words) for the job behind a remote run."""
    from gemma_panel.cloud import vertex

    if run.backend != VERTEX:
        raise ValueError(f"run {run.id}: unknown backend {run.backend!r}")
    status, message = vertex.get_status(run.job_name, client=client)
    if status == st.CANCELLED and message is None:
        message = f"the Vertex AI job {run.job_name} was cancelled"
    if status == st.FAILED and message:
        message = f"the Vertex AI job failed: {message}"
    return status, message


def cancel_job(store: RunStore, run: Run, *, client=None) -> Run:
    """Ask Vertex AI to cancel the run's job, mark the run, and read its state once."""
    from gemma_panel.cloud import vertex

    if run.status.active:
        vertex.cancel(run.job_name, client=client)
    store.request_cancel(run.id)
    poll(store, [run.id], client=client)
    return store.get(run.id)


def _reading_errors() -> tuple[type[BaseException], ...]:
    """What reading a job or its folder raises when the network, the credentials or the
    job are the problem (not a bug): those make a warning, not a failed command."""
    from gemma_panel.errors import UserError

    try:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
    except ImportError:  # no cloud extra: every poll fails on the import below
        return (UserError, OSError, ImportError)
    return (UserError, OSError, ImportError, GoogleAPIError, GoogleAuthError)


def _why(run: Run, exc: BaseException) -> str:
    from gemma_panel.errors import as_user_error

    said = as_user_error(exc)
    detail = str(said) if said is not None else f"{type(exc).__name__}: {exc}"
    return (f"run {run.id}: could not read the state of {run.job_name} ({detail[:300]}); "
            "its status is shown as last seen")
