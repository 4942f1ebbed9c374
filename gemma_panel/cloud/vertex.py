"""Vertex AI custom jobs: a recipe as a CustomJob on a TPU or GPU, submitted and cancelled.

The job runs the project's training image (``{image_repo}/gemma-panel:{version}-tpu`` or
``-cuda``, the tag pinned to this package's version) with ``gemma-panel run`` on the recipe,
which is uploaded beside the job's output under ``base_output_directory``. Vertex AI mounts
every bucket the job can read at ``/gcs/BUCKET`` (Cloud Storage FUSE), so the command reads
the recipe from there and the data from its gs:// paths.

A job may span several machines: a multi-host TPU slice (``tpu-v5e-16``) or several GPU
machines (``replicas``); every VM runs the same command and ``distribution.multihost``
joins them (Vertex AI's CLUSTER_SPEC for GPU pools, the TPU VM's own description for a
slice), process 0 alone writing.

`custom_job` builds the request body without any network call (``--dry-run`` prints it);
`submit` and `cancel` talk to the regional Vertex AI endpoint over REST.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from gemma_panel import __version__
from gemma_panel.cloud.gcs import is_gs_url, parse_gs_url
from gemma_panel.errors import UserError

ENDPOINT_ENV = "GEMMA_PANEL_VERTEX_ENDPOINT"  # another API endpoint (a loopback test server)
IMAGE_REPO_ENV = "GEMMA_PANEL_IMAGE_REPO"  # the Artifact Registry repository of the image
DEFAULT_REGION = "us-central1"


@dataclass(frozen=True)
class Hardware:
    """One ``--accelerator`` choice as Vertex AI's machine spec wants it.

    A TPU is one slice per job: the machine type is one VM of it and the topology the whole
    slice, so a multi-host slice (``tpu-v5e-16``: 4x4 chips on four 4-chip VMs) is still one
    replica, and Vertex AI starts every VM of the slice with the pool's command (the SDK's
    ``_DistributedTrainingSpec``: "TPU jobs only allow 1 replica"). GPU machines name the
    accelerator type and count; several of them are several replicas (`JobOptions.replicas`).

    Args:
        chips: devices of one replica (a TPU slice: all of its chips).
        hosts: VMs one replica spans, each running one training process.
        profile: the planner's hardware profile (``planning.hardware.PROFILES``) of a chip.
    """

    machine_type: str
    accelerator_type: str | None = None
    accelerator_count: int = 0
    tpu_topology: str | None = None
    chips: int = 1
    hosts: int = 1
    profile: str = ""

    @property
    def image_flavor(self) -> str:
        return "tpu" if self.tpu_topology else "cuda"


ACCELERATORS = {
    "tpu-v5e-4": Hardware("ct5lp-hightpu-4t", tpu_topology="2x2", chips=4, profile="tpu-v5e"),
    "tpu-v5e-16": Hardware("ct5lp-hightpu-4t", tpu_topology="4x4", chips=16, hosts=4,
                           profile="tpu-v5e"),
    "tpu-v6e-8": Hardware("ct6e-standard-8t", tpu_topology="2x4", chips=8, profile="tpu-v6e"),
    "tpu-v6e-16": Hardware("ct6e-standard-4t", tpu_topology="4x4", chips=16, hosts=4,
                           profile="tpu-v6e"),
    "l4": Hardware("g2-standard-8", "NVIDIA_L4", 1, profile="l4"),
    "a100": Hardware("a2-highgpu-1g", "NVIDIA_TESLA_A100", 1, profile="a100-40gb"),
    "h100": Hardware("a3-highgpu-8g", "NVIDIA_H100_80GB", 8, chips=8, profile="h100"),
}

# Vertex AI job states -> the run store's statuses.
_STATUSES = {
    "JOB_STATE_QUEUED": "queued", "JOB_STATE_PENDING": "queued",
    "JOB_STATE_RUNNING": "running", "JOB_STATE_UPDATING": "running",
    "JOB_STATE_PAUSED": "running", "JOB_STATE_SUCCEEDED": "succeeded",
    "JOB_STATE_FAILED": "failed", "JOB_STATE_EXPIRED": "failed",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "failed",
    "JOB_STATE_CANCELLING": "cancelled", "JOB_STATE_CANCELLED": "cancelled",
}


@dataclass(frozen=True)
class JobOptions:
    """What ``gemma-panel cloud submit`` takes besides the recipe.

    Args:
        output: gs:// prefix under which each job gets its folder (base_output_directory,
            which also holds the run folder's copy: metrics, samples, checkpoints).
        image_repo: the image repository (``$GEMMA_PANEL_IMAGE_REPO``); the tag is pinned.
        service_account: the identity the job runs as; it needs to read the data and the
            image and to write ``output``.
        timeout_hours: Vertex AI stops the job after this long.
    """

    accelerator: str
    output: str
    spot: bool = False
    region: str = DEFAULT_REGION
    project: str | None = None
    image_repo: str | None = None
    timeout_hours: float = 24.0
    job_id: str | None = None  # default: the recipe's name and the time
    service_account: str | None = None  # the job runs as this (default: Vertex AI's agent)
    replicas: int = 1  # GPU machines: the first is worker pool 0, the others pool 1

    def __post_init__(self):
        check_replicas(self.accelerator, self.replicas)


def hardware(name: str) -> Hardware:
    if name not in ACCELERATORS:
        raise UserError(f"unknown accelerator {name!r}: use one of {', '.join(ACCELERATORS)}.")
    return ACCELERATORS[name]


def check_replicas(accelerator: str, replicas: int) -> None:
    """Refuse a replica count Vertex AI would refuse, in words: TPU jobs are one slice."""
    if not isinstance(replicas, int) or replicas < 1:
        raise UserError(f"replicas must be a whole number of machines, 1 or more, got "
                        f"{replicas!r}.")
    if replicas > 1 and hardware(accelerator).tpu_topology:
        bigger = [n for n, h in ACCELERATORS.items() if h.tpu_topology and h.hosts > 1]
        raise UserError(f"a Vertex AI TPU job is one slice, so {accelerator} takes 1 "
                        f"replica, not {replicas}: for more chips choose a bigger slice "
                        f"({', '.join(bigger)}) with 1 replica.")


def devices(options: JobOptions) -> int:
    """Every chip the job holds (and is billed for): the chips of each replica, summed."""
    return hardware(options.accelerator).chips * options.replicas


def processes(options: JobOptions) -> int:
    """Training processes (VMs) of the job, each running the same command: one per host of
    a TPU slice, one per GPU replica."""
    return hardware(options.accelerator).hosts * options.replicas


def image_uri(options: JobOptions) -> str:
    repo = (options.image_repo or os.environ.get(IMAGE_REPO_ENV) or "gemma-panel").rstrip("/")
    name = repo if repo.endswith("/gemma-panel") or repo == "gemma-panel" else f"{repo}/gemma-panel"
    return f"{name}:{__version__}-{hardware(options.accelerator).image_flavor}"


def job_folder(recipe, options: JobOptions) -> str:
    """The job's base_output_directory: ``OUTPUT/JOB_ID`` (gs://)."""
    out = parse_gs_url(options.output.rstrip("/"))
    job_id = options.job_id or f"{_slug(recipe.name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    return str(out.child(job_id)).rstrip("/")


def fuse_path(gs_url: str) -> str:
    """Where a Vertex AI job sees ``gs://bucket/name``: ``/gcs/bucket/name``."""
    url = parse_gs_url(gs_url)
    return f"/gcs/{url.bucket}/{url.name}"


def local_data_paths(recipe) -> list[str]:
    """The recipe's data paths a job on Vertex AI could not read (not gs://, not tfds:)."""
    return [p for p in (recipe.data.train_path, recipe.data.validation_path)
            if p and not is_gs_url(p) and not p.startswith("tfds:")]


def job_command(folder: str) -> list[str]:
    """What every VM of every replica runs (the same command: ``distribution.multihost``
    tells each process its place): the recipe beside the job's output, the run folder's
    copy in the job's folder. A replica Vertex AI restarts (a preempted spot VM) runs it again and
    goes on from the last checkpoint the copy holds (``gemma-panel run --run-folder``)."""
    return ["gemma-panel", "run", fuse_path(f"{folder}/recipe.yaml"), "--run-folder", folder]


def custom_job(recipe, options: JobOptions, folder: str):
    """The ``aiplatform_v1.CustomJob`` for ``recipe``; no network call.

    Args:
        folder: the job's gs:// folder (`job_folder`); the recipe goes to
            ``folder/recipe.yaml``.
    """
    from google.cloud import aiplatform_v1 as v1
    from google.protobuf import duration_pb2

    pools = worker_pools(options, v1.ContainerSpec(
        image_uri=image_uri(options), command=job_command(folder),
        env=[v1.EnvVar(name=k, value=v) for k, v in worker_env(options).items()]))
    strategy = v1.Scheduling.Strategy.SPOT if options.spot else v1.Scheduling.Strategy.STANDARD
    scheduling = v1.Scheduling(
        timeout=duration_pb2.Duration(seconds=int(options.timeout_hours * 3600)),
        strategy=strategy, restart_job_on_worker_restart=options.spot)
    spec = v1.CustomJobSpec(worker_pool_specs=pools, scheduling=scheduling,
                            base_output_directory=v1.GcsDestination(output_uri_prefix=folder),
                            service_account=options.service_account or "")
    return v1.CustomJob(display_name=f"gemma-panel-{folder.rsplit('/', 1)[-1]}",
                        job_spec=spec,
                        labels={"gemma-panel": _label(__version__),
                                "accelerator": _label(options.accelerator)})


def worker_env(options: JobOptions) -> dict[str, str]:
    """What each VM is told besides what Vertex AI sets: on a multi-host TPU slice, how many
    hosts it has, so that ``distribution.multihost`` joins the slice (JAX finds the workers
    from the TPU VM) even where Vertex AI's CLUSTER_SPEC lists the one replica alone."""
    from gemma_panel.distribution.multihost import ENV_TPU_HOSTS

    hw = hardware(options.accelerator)
    return {ENV_TPU_HOSTS: str(hw.hosts)} if hw.tpu_topology and hw.hosts > 1 else {}


def worker_pools(options: JobOptions, container) -> list:
    """The job's worker pools, every replica running ``container``: pool 0 the primary (one
    replica; process 0, the coordinator, the only writer), pool 1 the other GPU machines
    (Vertex AI gives each its place in CLUSTER_SPEC, which ``distribution.multihost``
    reads). A TPU slice is one replica, whatever its hosts."""
    from google.cloud import aiplatform_v1 as v1

    hw = hardware(options.accelerator)
    machine = v1.MachineSpec(machine_type=hw.machine_type)
    if hw.accelerator_type:
        machine.accelerator_type = v1.AcceleratorType[hw.accelerator_type]
        machine.accelerator_count = hw.accelerator_count
    if hw.tpu_topology:
        machine.tpu_topology = hw.tpu_topology

    def pool(replicas: int):
        return v1.WorkerPoolSpec(machine_spec=machine, replica_count=replicas,
                                 container_spec=container,
                                 disk_spec=v1.DiskSpec(boot_disk_type="pd-ssd",
                                                       boot_disk_size_gb=100))

    return [pool(1)] + ([pool(options.replicas - 1)] if options.replicas > 1 else [])


def to_json(job) -> str:
    """The job as the REST API's JSON (camelCase, enum names)."""
    from google.cloud import aiplatform_v1 as v1

    return v1.CustomJob.to_json(job, use_integers_for_enums=False, indent=2,
                                always_print_fields_with_no_presence=False)


def status_of(job) -> tuple[str, str | None]:
    """(our status, the job's error message or None) for a CustomJob."""
    state = job.state.name if hasattr(job.state, "name") else str(job.state)
    status = _STATUSES.get(state, "queued")
    cause = job.error.message if status == "failed" and job.error.message else None
    if status == "failed" and cause is None:
        cause = f"the Vertex AI job ended in {state}"
    return status, cause


# ------------------------------------------------------------------ the API

def job_client(region: str, credentials=None):
    """The Vertex AI JobService client for ``region``, over REST, with the credentials
    Cloud Storage calls use (`gcs.credentials`: no credentials is one sentence saying how
    to get them). An ``http://`` endpoint in ``$GEMMA_PANEL_VERTEX_ENDPOINT`` (a loopback
    test server) is called anonymously, as ``$STORAGE_EMULATOR_HOST`` is."""
    from google.cloud import aiplatform_v1 as v1

    endpoint = os.environ.get(ENDPOINT_ENV) or f"{region}-aiplatform.googleapis.com"
    if credentials is None and endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    elif credentials is None:
        from gemma_panel.cloud.gcs import credentials as found

        credentials = found()[0]
    return v1.JobServiceClient(credentials=credentials, transport="rest",
                               client_options={"api_endpoint": endpoint})


def check_submittable(recipe, options: JobOptions) -> str:
    """What can be refused without a call (data on this machine, no project): the project.
    ``cloud submit`` checks this before it estimates the cost."""
    local = local_data_paths(recipe)
    if local:
        raise UserError(f"{local[0]} is on this machine, where a Vertex AI job cannot read "
                        "it: copy it to a bucket (gcloud storage cp) and set "
                        "data.train_path=gs://BUCKET/PATH.")
    project = options.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise UserError("no Google Cloud project: pass --project or set GOOGLE_CLOUD_PROJECT.")
    return project


def submit(recipe, recipe_yaml: str, options: JobOptions, *, client=None,
           storage_client=None) -> tuple[str, str]:
    """Upload the recipe, create the job; return (job resource name, job folder).

    Checked first: the data are on gs:// and readable, the output prefix writable.
    """
    import tempfile

    from gemma_panel.cloud import gcs, transfer

    project = check_submittable(recipe, options)
    storage_client = storage_client or gcs.default_client()
    reads = [p for p in (recipe.data.train_path, recipe.data.validation_path) if p]
    gcs.preflight(reads, writes=[options.output], client=storage_client)
    folder = job_folder(recipe, options)
    job = custom_job(recipe, options, folder)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "recipe.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(recipe_yaml)
        transfer.upload_file(path, f"{folder}/recipe.yaml", client=storage_client)
    client = client or job_client(options.region)
    created = client.create_custom_job(
        parent=f"projects/{project}/locations/{options.region}", custom_job=job)
    return created.name, folder


def cancel(name: str, *, client=None) -> None:
    """Ask Vertex AI to cancel the job ``projects/P/locations/R/customJobs/ID``."""
    client = client or job_client(_region_of(name))
    client.cancel_custom_job(name=name)


def get_status(name: str, *, client=None) -> tuple[str, str | None]:
    client = client or job_client(_region_of(name))
    return status_of(client.get_custom_job(name=name))


def api_error(exc: BaseException) -> UserError | None:
    """An answer of the Vertex AI API (403, 404, a disabled API) as one sentence with the
    next step; None when ``exc`` is not one (a bug keeps its traceback)."""
    try:
        from google.api_core import exceptions as gexc
    except ImportError:
        return None
    if not isinstance(exc, gexc.GoogleAPICallError):
        return None
    said = (getattr(exc, "message", "") or str(exc)).splitlines()[0][:300]
    return UserError(f"Vertex AI refused the call ({exc.code}: {said}); check the project "
                     "and region, that the Vertex AI API is enabled there, and that your "
                     "identity has roles/aiplatform.user.")


def _region_of(name: str) -> str:
    match = re.fullmatch(r"projects/[^/]+/locations/([^/]+)/customJobs/[^/]+", name)
    if not match:
        raise UserError(f"{name!r} is not a Vertex AI job name "
                        "(projects/PROJECT/locations/REGION/customJobs/ID).")
    return match.group(1)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40] or "run"


def _label(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]
