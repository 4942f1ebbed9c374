"""``gemma-panel``: the command line. Each command is a few lines over the library."""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter

from gemma_panel.errors import UserError, as_user_error  # after the environment is set


def cmd_models_list(args) -> int:
    from gemma_panel.models.listing import models_table

    print(models_table())
    return 0


def cmd_models_prepare(args) -> int:
    from gemma_panel.models.cache import import_record
    from gemma_panel.models.loader import prepare_model, resolve_source

    resolved = resolve_source(args.source)
    started = time.perf_counter()
    location = prepare_model(args.source, progress=not args.quiet)
    seconds = time.perf_counter() - started
    print(f"{args.source}: {resolved.description}")
    print(f"ready at {location} ({seconds:.1f} s)")
    if resolved.kind in ("bundled", "gguf"):
        record = import_record(__import__("pathlib").Path(location))
        print(f"first import took {record['import_seconds']:.1f} s (sha256 {record['sha256'][:16]}...)")
    return 0


def cmd_dashboard(args) -> int:
    check_port_free(args.address, args.port)  # before Panel and the app are imported
    from gemma_panel.ui.serve import serve_dashboard

    serve_dashboard(args.port, args.address, args.show, roots=args.data_roots)
    return 0


class PortUnavailable(UserError):
    """The dashboard cannot listen where it was asked to."""


def check_port_free(address: str, port: int) -> None:
    """Bind ``address:port`` for a moment, as the server will; a sentence if it cannot."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, OverflowError) as exc:
        raise PortUnavailable(f"cannot listen on {address}:{port} ({exc}); pass an address "
                              "of this machine to --address and a port 1-65535 to --port") \
            from exc
    for family, kind, proto, _, where in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado does
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortUnavailable(
                        f"port {port} on {address} is already in use (another dashboard?); "
                        f"stop that server, or pick another port, e.g. --port {port + 1}") \
                        from exc
                raise PortUnavailable(f"cannot listen on {address}:{port} "
                                      f"({exc.strerror}); choose another --address or --port") \
                    from exc


def cmd_generate(args) -> int:
    from gemma_panel.models.generation import SamplingOptions, StreamingGenerator, chat_prompt
    from gemma_panel.models.loader import load_model

    started = time.perf_counter()
    lm = load_model(args.model, progress=True)
    print(f"[loaded {args.model} in {time.perf_counter() - started:.1f} s]", file=sys.stderr)
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


def cmd_validate(args) -> int:
    from gemma_panel.config import load_recipe, recipe_to_yaml

    recipe = load_recipe(args.recipe, args.overrides)
    if args.show:
        print(recipe_to_yaml(recipe), end="")
    print(f"{args.recipe}: valid ({recipe.name}: {recipe.model.source}, "
          f"{recipe.data.train_path})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemma-panel",
        description="Fine-tune Gemma with LoRA on JAX/Keras: models, data, runs, exports.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

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

    validate = sub.add_parser("validate", help="check a recipe without building anything")
    validate.add_argument("recipe", help="a YAML recipe, e.g. recipes/quickstart.yaml")
    validate.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE")
    validate.add_argument("--show", action="store_true",
                          help="print the resolved recipe with every field explained")
    validate.set_defaults(func=cmd_validate)

    dashboard = sub.add_parser("dashboard", help="serve the Panel dashboard (on 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=5006)
    dashboard.add_argument("--address", default="127.0.0.1",
                           help="interface to listen on (default: %(default)s, this machine "
                                "only, no login); any other asks for a password: "
                                "GEMMA_PANEL_PASSWORD, or one printed at start")
    dashboard.add_argument("--data-root", action="append", metavar="FOLDER", dest="data_roots",
                           help="a folder whose files pages may read (repeatable; default: "
                                "the working directory); uploads and the shipped examples "
                                "always are")
    dashboard.add_argument("--show", action="store_true", help="open it in a browser")
    dashboard.set_defaults(func=cmd_dashboard)

    from gemma_panel.cli_data import add_data_commands
    from gemma_panel.cli_export import add_export_commands
    from gemma_panel.cli_runs import add_run_commands

    add_data_commands(sub)
    add_run_commands(sub)
    add_export_commands(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: the CLI's one error boundary.

    An error a user can cause (``gemma_panel.errors.as_user_error``) is printed as its
    sentence on stderr, without a traceback, and exits with its ``exit_code`` (2); a bug
    keeps its traceback.
    """
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        store = getattr(args, "store", None)
        error = as_user_error(exc, database=os.path.join(store, "runs.db") if store else None)
        if error is None:
            raise
        first, *detail = error.lines()
        print(f"gemma-panel: {first}", *detail, sep="\n", file=sys.stderr)
        return error.exit_code


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
