"""Write the Reference pages at build time (mkdocs-gen-files): nothing here is committed.

The command line from ``gemma_panel.cli.build_parser()``, the recipe fields from the schema's
help texts (``gemma_panel.config.iter_fields`` / ``field_help``), the model table from
``gemma_panel.models.registry.MODELS``, and one mkdocstrings page per public package. Each
text is written once, in the code; the site only shows it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import mkdocs_gen_files

# argparse wraps help to the terminal's width; a fixed width keeps the pages the same anywhere.
os.environ["COLUMNS"] = "96"

from gemma_panel.cli import build_parser
from gemma_panel.config import SECTIONS, field_help, iter_fields
from gemma_panel.models.registry import MODELS

# The public packages whose __init__ re-exports the API (the implementation modules stay
# private), in the order a reader meets them.
API_MODULES = {
    "config": "The recipe: its typed schema, loading, overrides and validation.",
    "data": "Datasets: readers, the validation report, templates, splitting, augmentation.",
    "models": "Model sources, the cache, the registry, loading and generation.",
    "training": "The trainer, its event sinks and the tuned model.",
    "evaluation": "Task metrics over generated text.",
    "runs": "The run store, the queue and comparisons.",
    "export": "Exports and their verification.",
    "distribution": "Devices, strategies and weight layouts.",
    "errors": "Errors a user can cause, told apart from bugs.",
}


def _subcommands(parser: argparse.ArgumentParser):
    """Yield (words, parser) for the parser and every subcommand under it, depth first."""
    yield [], parser
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for words, deeper in _subcommands(sub):
                    yield [name, *words], deeper


def cli_page() -> str:
    lines = ["# Command line", "",
             ("Every `gemma-panel` command with its options, as `--help` prints them "
              "(generated from the parser at build time)."), ""]
    for words, parser in _subcommands(build_parser()):
        title = " ".join(["gemma-panel", *words])
        lines += [f"## {title}", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    return repr(f.default_factory())


def recipe_page() -> str:
    lines = ["# Recipe fields", "",
             ("Every field a recipe YAML (or an override such as `train.learning_rate=1e-4`) "
              "can set, with its default, generated from the schema in "
              "`gemma_panel/config/schema.py`. `gemma-panel validate RECIPE --show` prints "
              "the same text beside a recipe's values."), ""]
    section = None
    for name, f, hint in iter_fields():
        if name != section:
            section = name
            doc = (SECTIONS[name].__doc__ or "").strip().splitlines()
            lines += [f"## {name}", "", doc[0] if doc else "", ""]
        path = f"{name}.{f.name}"
        kind = getattr(hint, "__name__", None) or str(hint)
        lines += [f"### `{path}` {{#{path.replace('.', '-')}}}", "",
                  f"*{kind}*, default `{_default(f)}`", "", field_help(path), ""]
    return "\n".join(lines)


def models_page() -> str:
    lines = ["# Models", "",
             ("The model registry (`gemma_panel/models/registry.py`), as "
              "`gemma-panel models list` shows it. Every name takes `-it` for its "
              "instruction-tuned twin."), "",
             "| name | family | parameters | context | reads | download | licence |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for spec in MODELS.values():
        params = f"{spec.params / 1e9:.2f} B"
        download = "bundled" if spec.bundled else f"{spec.download_bytes() / 1e9:.1f} GB"
        lines.append(f"| `{spec.name}` | {spec.family} | {params} | {spec.context_length:,} "
                     f"| {', '.join(spec.modalities)} | {download} | {spec.licence} |")
    return "\n".join(lines) + "\n"


def api_pages() -> dict[str, str]:
    index = ["# Python API", "",
             ("Each package re-exports its public names from its `__init__`; these pages "
              "are generated from their docstrings by mkdocstrings."), ""]
    pages = {}
    for module, what in API_MODULES.items():
        index.append(f"- [`gemma_panel.{module}`]({module}.md): {what}")
        page = f"# gemma_panel.{module}\n\n::: gemma_panel.{module}\n"
        pages[f"reference/api/{module}.md"] = page
    pages["reference/api/index.md"] = "\n".join(index) + "\n"
    return pages


def main() -> None:
    pages = {"reference/cli.md": cli_page(), "reference/recipe.md": recipe_page(),
             "reference/models.md": models_page(), **api_pages()}
    for path, text in pages.items():
        with mkdocs_gen_files.open(path, "w") as out:
            out.write(text)


main()
