"""``gemma-panel cloud``: Vertex AI jobs and Cloud Storage from the command line.

    gemma-panel cloud submit recipes/quickstart.yaml --accelerator tpu-v5e-4 --spot \\
        --output gs://my-bucket/jobs data.train_path=gs://my-bucket/data/train.jsonl
    gemma-panel cloud submit recipes/quickstart.yaml --accelerator l4 --dry-run
    gemma-panel cloud submit recipes/quickstart.yaml --accelerator h100 --max-cost 50 --yes
    gemma-panel cloud submit recipes/quickstart.yaml --accelerator tpu-v5e-16 ...  # 4 VMs
    gemma-panel cloud submit recipes/quickstart.yaml --accelerator h100 --replicas 2 ...
    gemma-panel cloud status projects/P/locations/us-central1/customJobs/123
    gemma-panel cloud cancel projects/P/locations/us-central1/customJobs/123
    gemma-panel cloud upload runs/r1/exports/hf gs://my-bucket/exports/r1/hf
    gemma-panel cloud tpu-vm my-tpu --zone us-central1-a --accelerator tpu-v5e-4 --spot
    gemma-panel cloud whoami

``submit`` prints the planner's time and cost estimate first and asks before it sends
anything (``--yes``: do not ask; ``--max-cost USD``: refuse an estimate above it).

Exit status: 0 done; 1 not confirmed; 2 the request was wrong (a missing bucket, a permission, ...).
"""

from __future__ import annotations

import os
import sys

OUTPUT_ENV = "GEMMA_PANEL_CLOUD_OUTPUT"


def add_cloud_commands(sub) -> None:
    """Register ``cloud`` on an argparse subparsers object."""
    from gemma_panel.cloud.vertex import ACCELERATORS, DEFAULT_REGION

    cloud = sub.add_parser("cloud", help="train on Vertex AI; copy to Cloud Storage")
    cloud_sub = cloud.add_subparsers(dest="cloud_command", required=True)
    _add_submit(cloud_sub.add_parser("submit", help="run a recipe as a Vertex AI custom job"),
                ACCELERATORS, DEFAULT_REGION)
    for name, helptext, func in (("status", "a job's state as a run status", cmd_status),
                                 ("cancel", "cancel a Vertex AI job", cmd_cancel)):
        cmd = cloud_sub.add_parser(name, help=helptext)
        cmd.add_argument("job", help="projects/PROJECT/locations/REGION/customJobs/ID")
        cmd.set_defaults(func=func)
    upload = cloud_sub.add_parser("upload", help="upload a finished folder, create-only, "
                                                 "checksums verified")
    upload.add_argument("folder")
    upload.add_argument("destination", help="gs://BUCKET/PATH (must hold nothing yet)")
    upload.set_defaults(func=cmd_upload)
    tpu = cloud_sub.add_parser("tpu-vm", help="print the gcloud lines to train on a Cloud "
                                             "TPU VM (nothing is run)")
    tpu.add_argument("name", help="the TPU VM's name")
    tpu.add_argument("--zone", required=True, help="e.g. us-central1-a")
    tpu.add_argument("--accelerator", default="tpu-v5e-4",
                     help="tpu-v5e-1|4|8|16|32 or tpu-v6e-1|4|8|16|32 (16 and 32: "
                          "4 and 8 VMs, one run over all; default tpu-v5e-4)")
    tpu.add_argument("--project")
    tpu.add_argument("--spot", action="store_true")
    tpu.add_argument("--recipe", default="recipe.yaml", help="the local recipe to copy over")
    tpu.add_argument("--package", default="gemma-panel[tpu,cloud]",
                     help="what pip installs there (a name, a wheel or a source URL)")
    tpu.set_defaults(func=cmd_tpu_vm)
    whoami = cloud_sub.add_parser("whoami", help="the identity Cloud Storage calls use")
    whoami.set_defaults(func=cmd_whoami)


def _add_submit(submit, accelerators, default_region) -> None:
    """The ``cloud submit`` arguments."""
    submit.add_argument("recipe", help="a YAML recipe, e.g. recipes/quickstart.yaml")
    submit.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE",
                        help="override recipe fields, e.g. data.train_path=gs://b/train.jsonl")
    submit.add_argument("--accelerator", required=True, choices=list(accelerators),
                        help="a TPU slice (tpu-v5e-16 and tpu-v6e-16 span 4 VMs) or a GPU "
                             "machine")
    submit.add_argument("--replicas", type=int, default=1, metavar="N",
                        help="GPU machines to train on, each running the same command "
                             "(worker pool 0 is the primary, pool 1 the others; a TPU job "
                             "is one slice: 1)")
    submit.add_argument("--spot", action="store_true",
                        help="spot capacity: cheaper, may be preempted (restarts the job)")
    submit.add_argument("--region", default=default_region)
    submit.add_argument("--project", help="default: $GOOGLE_CLOUD_PROJECT")
    submit.add_argument("--output", default=os.environ.get(OUTPUT_ENV),
                        help=f"gs:// prefix for job folders (default: ${OUTPUT_ENV}, "
                             "else the recipe's train.storage)")
    submit.add_argument("--image-repo", help="the training image's repository "
                                             "(default: $GEMMA_PANEL_IMAGE_REPO)")
    submit.add_argument("--service-account", help="the job runs as this service account")
    submit.add_argument("--timeout-hours", type=float, default=24.0)
    submit.add_argument("--job-id", help="the job folder's name (default: recipe name + time)")
    submit.add_argument("--dry-run", action="store_true",
                        help="print the job spec as JSON; send nothing (no estimate)")
    submit.add_argument("--yes", action="store_true",
                        help="submit after printing the estimate, without asking")
    submit.add_argument("--max-cost", type=float, metavar="USD",
                        help="refuse to submit when the estimated cost is above this")
    submit.add_argument("--prices", help="a price file laid over the shipped table")
    submit.set_defaults(func=cmd_submit)


def _options(args, recipe):
    from gemma_panel.cloud.vertex import JobOptions
    from gemma_panel.errors import UserError

    output = args.output or recipe.train.storage
    if not output:
        raise UserError(f"no output prefix: pass --output gs://BUCKET/PATH (or set "
                        f"{OUTPUT_ENV}, or train.storage in the recipe); each job gets a "
                        "folder below it.")
    return JobOptions(accelerator=args.accelerator, output=output, spot=args.spot,
                      region=args.region, project=args.project, image_repo=args.image_repo,
                      timeout_hours=args.timeout_hours, job_id=args.job_id,
                      service_account=args.service_account, replicas=args.replicas)


def cmd_submit(args) -> int:
    from gemma_panel.cloud import vertex
    from gemma_panel.config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    options = _options(args, recipe)
    if args.dry_run:
        folder = vertex.job_folder(recipe, options)
        print(vertex.to_json(vertex.custom_job(recipe, options, folder)))
        project = options.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or "PROJECT"
        print(f"dry run, nothing sent: the job would go to projects/{project}/locations/"
              f"{options.region} ({vertex.processes(options)} VM(s), "
              f"{vertex.devices(options)} devices), its recipe to {folder}/recipe.yaml",
              file=sys.stderr)
        for path in vertex.local_data_paths(recipe):
            print(f"warning: {path} is a local path, which the job cannot read; copy it to "
                  "a bucket and override data.train_path", file=sys.stderr)
        return 0
    vertex.check_submittable(recipe, options)
    if not _estimated_and_confirmed(recipe, args):
        print("nothing submitted")
        return 1
    from gemma_panel.runs.remote import submit_vertex

    run = submit_vertex(recipe, options)
    print(f"submitted {run.job_name} as run {run.id}; its folder is {run.remote_dir}")
    print(f"follow it with 'gemma-panel runs show {run.id}'; "
          f"cancel with 'gemma-panel runs cancel {run.id}'")
    return 0


def _estimated_and_confirmed(recipe, args) -> bool:
    """Print the job's time and cost estimate; refuse one above --max-cost; ask unless
    --yes. False when the user said no."""
    from gemma_panel.cloud.estimate import job_estimate
    from gemma_panel.planning.prices import load_prices

    estimate = job_estimate(recipe, args.accelerator, args.spot, load_prices(args.prices),
                            args.replicas)
    print("\n".join(estimate.lines()))
    estimate.check_limit(args.max_cost)
    if args.yes:
        return True
    try:
        answer = input("submit this job? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def cmd_status(args) -> int:
    from gemma_panel.cloud import vertex

    status, cause = vertex.get_status(args.job)
    print(status + (f": {cause}" if cause else ""))
    return 0


def cmd_cancel(args) -> int:
    from gemma_panel.cloud import vertex

    vertex.cancel(args.job)
    print(f"cancel requested for {args.job}")
    return 0


def cmd_upload(args) -> int:
    from gemma_panel.cloud.transfer import upload_folder

    done = upload_folder(args.folder, args.destination)
    total = sum(u.size for u in done)
    print(f"{len(done)} files ({total} bytes) uploaded to {args.destination}, "
          "checksums verified")
    return 0


def cmd_tpu_vm(args) -> int:
    from gemma_panel.cloud.tpu import TpuVm, script

    print(script(TpuVm(args.name, args.zone, args.accelerator, project=args.project,
                       spot=args.spot, recipe=args.recipe, package=args.package)), end="")
    return 0


def cmd_whoami(args) -> int:
    from gemma_panel.cloud.gcs import identity

    print(identity())
    return 0
