"""The Data tab's slow work, run in background threads: read, check, tokenize, render.

Each function takes plain arguments and returns plain data (lists and dicts) for
``DataModel`` to apply on the page's thread.
"""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import gemma_panel
from gemma_panel.data import (
    DatasetError,
    ReadOptions,
    TokenStatistics,
    ValidationReport,
    check_dataset,
    head_examples,
    loss_mask_pieces,
    open_records,
    tokenize_example,
)
from gemma_panel.data.images import ImageRefused, preview_thumbnails
from gemma_panel.data.templates import family_mismatch, reads_tools, render_text, resolve_template

from .server_paths import PathRefused, confine_data_path
from .uploads import DATA_EXTENSIONS

PREVIEW_ROWS = 50
RENDER_ROWS = 20

_TOKENIZERS: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def example_datasets() -> dict[str, str]:
    """The datasets shipped in the checkout's ``examples/`` folder: label -> path."""
    root = Path(gemma_panel.__file__).resolve().parents[1] / "examples"
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): str(p) for p in sorted(root.rglob("*"))
            if p.suffix in DATA_EXTENSIONS and p.is_file()}


def load_tokenizer(source: str):
    """The SentencePiece tokenizer of a model source, prepared once per process.

    A source seen for the first time is prepared (a GGUF imported into the cache) by a
    child process, so the import's memory is given back when it ends; only the small
    tokenizer file is then read here.
    """
    from gemma_panel.data import SentencePieceTokenizer
    from gemma_panel.models.loader import tokenizer_file

    with _TOKENIZER_LOCK:
        if source in _TOKENIZERS:
            return _TOKENIZERS[source]
    command = [sys.executable, "-m", "gemma_panel", "models", "prepare", source, "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["it failed"])[-1]
        raise DatasetError(f"cannot prepare the tokenizer of {source!r}: {why}")
    tokenizer = SentencePieceTokenizer(tokenizer_file(source, progress=False))
    with _TOKENIZER_LOCK:
        _TOKENIZERS[source] = tokenizer
    return tokenizer

def loaded_tokenizer(source: str):
    """The tokenizer of a source when this process has already prepared it, else None."""
    with _TOKENIZER_LOCK:
        return _TOKENIZERS.get(source)


def _template(name: str, report: dict, options: dict):
    return resolve_template(name, report.get("task"), sorted(report.get("label_counts", {})),
                            **options)


def _with_tools(read: ReadOptions, template_name: str, options: dict) -> ReadOptions:
    """The read options, reading tool-call turns where the model's chat format has them."""
    return dataclasses.replace(read, tools=reads_tools(template_name, options.get("family")))


def check_file(path: str, read: ReadOptions, template_name: str,
               options: dict | None = None) -> dict:
    """Worker thread: read the first rows, check the whole file, render a few examples.

    ``options`` are the model's template options (`preflight.template_options`): the
    examples are rendered in its family's chat format, and a template of another family
    is warned about (``template_family``) in the report.
    """
    options = options or {}
    read = _with_tools(read, template_name, options)
    preview: list[dict] = []
    try:
        records = open_records(path, ValidationReport(source=path), format=read.format,
                               text_mode=read.text_mode)
        preview = [dict(r.values) for r in itertools.islice(records, PREVIEW_ROWS)]
    except DatasetError:
        pass  # the check below reports why
    columns = list(dict.fromkeys(k for row in preview for k in row))
    report = check_dataset(path, read=read)
    examples = []
    if report.rows_usable:
        template = _template(template_name, report.to_dict(), options)
        mismatch = family_mismatch(template, options.get("family"))
        if mismatch:
            report.warning("template_family", mismatch)
        for e in _head(path, read):
            try:
                segments = template.segments(e)
            except DatasetError as exc:  # e.g. the chat template on classification rows
                examples.append(_unrenderable(e.row, template_name, exc))
                continue
            pieces = [(render_text([s]), s.trained) for s in segments]
            examples.append({"row": e.row, "pieces": pieces, "by_token": False,
                             "text": render_text(segments)})
    return {"preview": [{k: _cell(v) for k, v in row.items()} for row in preview],
            "columns": columns, "report": report.to_dict(), "text": report.to_text(),
            "examples": examples, "thumbnails": _thumbnails(preview, path, columns, report)}


def _confined_image(path: Path) -> Path:
    """An image the page may see: inside a data root, like the data files themselves."""
    try:
        return confine_data_path(path)
    except PathRefused as exc:
        raise ImageRefused(str(exc)) from exc


def _thumbnails(preview: list[dict], path: str, columns: list[str], report) -> list[dict]:
    """The preview rows' images as small thumbnails, beside the row's text."""
    thumbs = preview_thumbnails(preview, path, columns, report.columns.get("messages"),
                                confine=_confined_image)
    for thumb in thumbs:
        values = preview[thumb["row"] - 1]
        text = " | ".join(str(_cell(v)) for k, v in values.items()
                          if k in report.columns.values())
        thumb["text"] = text[:300]
    return thumbs


def measure_tokens(path: str, read: ReadOptions, template_name: str, source: str,
                   seq: int, options: dict | None = None) -> dict:
    """Worker thread: token lengths of every example and the loss mask of the first few
    (in the chat format ``options`` say, as `check_file`)."""
    options = options or {}
    read = _with_tools(read, template_name, options)
    tokenizer = load_tokenizer(source)
    quick = check_dataset(path, read=read)
    template = _template(template_name, quick.to_dict(), options)
    report = check_dataset(path, read=read, template=template, tokenizer=tokenizer,
                           sequence_length=seq)
    stats = report.token_stats
    if stats is None:
        stats = TokenStatistics(sequence_length=seq).summary()
    examples = []
    for e in _head(path, read):
        try:
            tokenized = tokenize_example(e, template, tokenizer, seq)
        except DatasetError as exc:
            examples.append(_unrenderable(e.row, template_name, exc))
            continue
        examples.append({"row": e.row, "pieces": loss_mask_pieces(tokenized, tokenizer),
                         "by_token": True, "truncated": tokenized.truncated})
    return {"stats": stats, "examples": examples}


def _unrenderable(row: int, template_name: str, exc: Exception) -> dict:
    message = (f"Row {row} cannot be rendered with the '{template_name}' template: {exc}. "
               "Choose another template (auto picks one from the columns).")
    return {"row": row, "pieces": [(message, False)], "by_token": False, "text": message}


def _head(path: str, read: ReadOptions):
    try:
        return head_examples(path, read, RENDER_ROWS)
    except DatasetError:
        return []


def _cell(value) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not isinstance(value, str) or len(value) < 500 else value[:500] + "..."
    return str(value)[:500]
