"""``gemma-panel``: the command line. Each command is a few lines over the library.

One module per command group (``models``, ``data``, ``runs``, ``export``, ``dashboard``),
``format`` for how counts, sizes and durations are written, and here the parser and the
one error boundary. Nothing outside this package imports it (``gemma_panel/__main__.py``
and ``gemma_panel.ui``'s ``python -m`` alias, entry points, excepted).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter

from gemma_panel.errors import report_user_error  # after the environment is set


def build_parser() -> argparse.ArgumentParser:
    from gemma_panel.cli.cloud import add_cloud_commands
    from gemma_panel.cli.dashboard import add_dashboard_command
    from gemma_panel.cli.data import add_data_commands
    from gemma_panel.cli.export import add_export_commands
    from gemma_panel.cli.models import add_model_commands
    from gemma_panel.cli.plan import add_plan_command
    from gemma_panel.cli.runs import add_recipe_commands, add_run_commands

    parser = argparse.ArgumentParser(
        prog="gemma-panel",
        description="Fine-tune Gemma with LoRA on JAX/Keras: models, data, runs, exports.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_model_commands(sub)
    add_recipe_commands(sub)
    add_dashboard_command(sub)
    add_data_commands(sub)
    add_run_commands(sub)
    add_export_commands(sub)
    add_cloud_commands(sub)
    add_plan_command(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: the CLI's one error boundary.

    An error a user can cause (``gemma_panel.errors.report_user_error``) is printed as its
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
        code = report_user_error(exc, os.path.join(store, "runs.db") if store else None)
        if code is None:
            raise
        return code


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))
