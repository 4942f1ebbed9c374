"""``gemma-panel models list|prepare`` and ``generate``: the model layer from the command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gemma_panel.cli.format import seconds


def add_model_commands(sub) -> None:
    """Register ``models`` and ``generate`` on an argparse subparsers object."""
    models = sub.add_parser("models", help="list and prepare models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    listing = models_sub.add_parser("list", help="the Gemma models we know, with sizes and presets")
    listing.set_defaults(func=cmd_models_list)
    prepare = models_sub.add_parser(
        "prepare", help="import a model into the cache now (a GGUF is converted once)"
    )
    prepare.add_argument("source", help="gemma3-270m, a .gguf path, a Hugging Face folder, a preset")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=cmd_models_prepare)

    generate = sub.add_parser("generate", help="generate text, streamed to the terminal")
    generate.add_argument("prompt")
    generate.add_argument("--model", default="gemma3-270m", help="any model source (default: %(default)s)")
    generate.add_argument("--chat", action="store_true", help="wrap the prompt in Gemma's turn format")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=0, help="0: no limit")
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=cmd_generate)

    devices = sub.add_parser("devices", help="what JAX sees here: backend, devices, memory, bfloat16")
    devices.add_argument("--json", action="store_true", help="print the report as JSON")
    devices.set_defaults(func=cmd_devices)


def cmd_models_list(args) -> int:
    from gemma_panel.models.listing import models_table

    print(models_table())
    return 0


def cmd_devices(args) -> int:
    import json

    from gemma_panel.distribution import describe_devices

    report = describe_devices()
    print(json.dumps(report.to_dict(), indent=2) if args.json else "\n".join(report.lines()))
    return 0


def cmd_models_prepare(args) -> int:
    from gemma_panel.models.cache import import_record
    from gemma_panel.models.loader import prepare_model, resolve_source

    resolved = resolve_source(args.source)
    started = time.perf_counter()
    location = prepare_model(args.source, progress=not args.quiet)
    took = time.perf_counter() - started
    print(f"{args.source}: {resolved.description}")
    print(f"ready at {location} ({seconds(took)})")
    if resolved.kind in ("bundled", "gguf"):
        record = import_record(Path(location))
        print(f"first import took {seconds(record['import_seconds'])} "
              f"(sha256 {record['sha256'][:16]}...)")
    return 0


def cmd_generate(args) -> int:
    from gemma_panel.models.generation import SamplingOptions, StreamingGenerator, chat_prompt
    from gemma_panel.models.loader import load_model

    started = time.perf_counter()
    lm = load_model(args.model, progress=True)
    print(f"[loaded {args.model} in {seconds(time.perf_counter() - started)}]", file=sys.stderr)
    options = SamplingOptions(
        max_new_tokens=args.max_new_tokens,
        greedy=not args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )
    prompt = chat_prompt(args.prompt) if args.chat else args.prompt
    generator = StreamingGenerator(lm)
    if not args.chat:
        print(args.prompt, end="", flush=True)
    for piece in generator.stream(prompt, options):
        print(piece, end="", flush=True)
    print()
    return 0
