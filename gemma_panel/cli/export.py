"""``gemma-panel export RUN_ID --format FORMAT``: a run's tuned model, exported and verified.

    gemma-panel export my-run-3f2a --format gguf --quantize q8_0
    gemma-panel export my-run-3f2a --format hf --out ~/models/my-gemma-hf
    gemma-panel export my-run-3f2a --format lora --step 200

Exit status: 0 written and verified; 1 written but a check failed (nothing kept);
2 the request was wrong (unknown format, no checkpoint, folder exists ...).
"""

from __future__ import annotations

import argparse
import json
import sys

from gemma_panel.cli.format import megabytes, seconds


def add_export_commands(sub) -> None:
    """Register ``export`` on an argparse subparsers object."""
    from gemma_panel.export.gguf import GGUF_TYPES
    from gemma_panel.export.pipeline import FORMATS

    formats = "\n".join(f"  {name:<11} {text}" for name, text in FORMATS.items())
    export = sub.add_parser(
        "export", help="export a run's tuned model (Keras, SavedModel, Hugging Face, GGUF)",
        description=f"Formats:\n{formats}\n\nEvery export is loaded back and checked; its "
                    "folder holds manifest.json (files, checksums, checks) and README.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("run_id", help="a run id (or unique prefix) or a run folder")
    export.add_argument("--format", "-f", dest="format", required=True, choices=list(FORMATS))
    export.add_argument("--quantize", "-q", metavar="TYPE",
                        help=f"gguf: {', '.join(GGUF_TYPES)} (default f16); keras: int8; "
                             "litert: int8 (default), f32")
    export.add_argument("--merge", action=argparse.BooleanOptionalAction,
                        default=True, help="fold LoRA into the weights (default; savedmodel, "
                                           "hf and gguf need it)")
    export.add_argument("--out", help="the export folder (default: "
                                      "<run folder>/exports/<format>[-<type>]-step<N>)")
    export.add_argument("--step", type=int, help="the checkpoint step (default: the latest)")
    export.add_argument("--force", action="store_true",
                        help="replace an existing export folder (once the new one is done)")
    export.add_argument("--json", action="store_true", help="print the manifest as JSON")
    export.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from gemma_panel.export import VerificationError, export_run

    try:  # a wrong request (ExportError) is the CLI boundary's: exit 2
        result = export_run(args.run_id, args.format, quantize=args.quantize,
                            merge=args.merge, out=args.out, step=args.step,
                            overwrite=args.force)
    except VerificationError as exc:  # written, but it did not load back as the model
        print(f"gemma-panel: {exc}", file=sys.stderr)
        return 1
    manifest = result.manifest
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    source = manifest["source"]
    print(f"{manifest['format']}{' ' + manifest['quantize'] if manifest['quantize'] else ''} "
          f"export of run {source['run_id']} step {source['step']}: {result.path}")
    for entry in manifest["files"]:
        print(f"  {megabytes(entry['bytes'])}  {entry['path']}")
    checks = manifest["verification"]["checks"]
    for check in checks:
        mark = "measured" if check.get("measured") else "ok"
        print(f"  [{mark}] {check['name']}: {check['detail']}")
    print(f"verified: {sum(1 for c in checks if not c.get('measured'))} checks passed "
          f"in {seconds(manifest['timings']['export_and_verify_s'])}")
    return 0
