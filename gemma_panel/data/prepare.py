"""`prepare_dataset`: from a file to checked, de-duplicated, split, tokenized examples."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemma_panel.data.check import ReadOptions, head_examples, scan_file
from gemma_panel.data.columns import ColumnMapping
from gemma_panel.data.example import Example, near_key
from gemma_panel.data.policies import (
    DuplicatePolicy,
    MissingPolicy,
    check_duplicate_policy,
    resolve_missing_policies,
)
from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.split import find_split_leaks, split_examples
from gemma_panel.data.stats import TokenStatistics
from gemma_panel.data.templates import (
    Template,
    family_mismatch,
    reads_tools,
    render_text,
    resolve_template,
)
from gemma_panel.data.tokenized import TokenizedExample, length_problems, tokenize_example
from gemma_panel.data.tokenizer import TextTokenizer
from gemma_panel.files import open_atomic, same_file, write_atomic

# Problems that leave nothing to train on, whatever rows are skipped.
_FATAL = {"unreadable", "empty_file", "binary_file", "no_examples", "unknown_columns",
          "single_label"}

Augmenter = Callable[[Sequence[Example]], list[Example]]

# What `PreparedDataset.save` writes into its folder.
OUTPUT_FILES = ("train.jsonl", "validation.jsonl", "report.json", "dataset.json")


def check_output_dir(output_dir: str | os.PathLike,
                     inputs: Sequence[str | os.PathLike | None]) -> None:
    """Refuse an output folder where saving would write over one of the input files.

    Raises:
        DatasetError: one of ``OUTPUT_FILES`` in ``output_dir`` is an input file.
    """
    out = Path(output_dir)
    for name in OUTPUT_FILES:
        for source in inputs:
            if source is not None and same_file(out / name, source):
                raise DatasetError(
                    f"Writing to '{out}' would replace the input file '{source}' with the "
                    f"prepared {name}; choose another output folder, e.g. --out "
                    f"{out / 'prepared'}.")


@dataclass
class PreparedDataset:
    """Training and validation examples, ready for the trainer, with the report that
    explains what was done to them.

    `train_tokens` / `validation_tokens` are filled when a tokenizer was given.
    """

    train: list[Example]
    validation: list[Example]
    mapping: ColumnMapping
    template: Template
    report: ValidationReport
    train_tokens: list[TokenizedExample] = field(default_factory=list)
    validation_tokens: list[TokenizedExample] = field(default_factory=list)
    token_stats: dict[str, Any] | None = None
    sources: tuple[str, ...] = ()  # the files read, which `save` never writes over

    @property
    def labels(self) -> list[str]:
        return sorted({e.label for e in self.train + self.validation if e.label is not None})

    def save(self, output_dir: str | os.PathLike) -> Path:
        """Write train.jsonl, validation.jsonl, report.json and dataset.json to a folder.

        Each JSONL line holds the example's fields, its rendered text and, when tokenized,
        ``input_ids`` and ``loss_mask``. Each file is written whole or not at all.

        Raises:
            DatasetError: a file would be written over one of ``sources``.
        """
        out = Path(output_dir)
        check_output_dir(out, self.sources)
        out.mkdir(parents=True, exist_ok=True)
        for name, examples, tokens in (("train", self.train, self.train_tokens),
                                       ("validation", self.validation, self.validation_tokens)):
            with open_atomic(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for i, example in enumerate(examples):
                    row = example.to_dict()
                    row["rendered"] = render_text(self.template.segments(example))
                    if tokens:
                        row["input_ids"] = tokens[i].input_ids
                        row["loss_mask"] = tokens[i].loss_mask
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_atomic(out / "report.json", json.dumps(self.report.to_dict(), indent=1))
        meta = {"task": self.mapping.task, "columns": self.mapping.as_dict(),
                "template": self.template.name, "labels": self.labels,
                "train_examples": len(self.train), "validation_examples": len(self.validation),
                "token_stats": self.token_stats}
        write_atomic(out / "dataset.json", json.dumps(meta, indent=1))
        return out


def prepare_dataset(
    path: str | os.PathLike,
    *,
    read: ReadOptions | None = None,
    validation_path: str | os.PathLike | None = None, validation_fraction: float = 0.1,
    split_by: str | None = None, stratify: bool | None = None, seed: int = 0,
    template: Template | str | None = None, template_options: dict | None = None,
    tokenizer: TextTokenizer | None = None, sequence_length: int | None = None,
    missing: str | MissingPolicy | dict | None = None,
    duplicates: DuplicatePolicy = "keep_first", near_duplicates: bool = False,
    skip_bad_rows: bool = False, min_label_examples: int = 5,
    augment: Augmenter | None = None, output_dir: str | os.PathLike | None = None,
) -> PreparedDataset:
    """Read, check, clean, split, augment and tokenize a dataset.

    Args:
        read: how to read the file(s): format, encoding, column overrides.
        validation_path: a separate validation file; otherwise `validation_fraction` of
            the rows is held out (by `split_by` column groups, or stratified by label:
            `stratify` defaults to True for classification).
        template: the prompt template, or its name (``auto``: the task's default, as
            when None). Every example is rendered with it; a row it cannot render is an
            error (``template_mismatch``), so the wrong template fails here, never later.
            `template_options` (the model's ``family``, ...) go to `resolve_template`.
        tokenizer, sequence_length: tokenize every example (truncating at the length).
        missing: missing-value policy, one for all roles or per role.
        duplicates: ``"keep_first"``, ``"drop_all"`` or ``"keep_all"`` exact duplicates
            (and near duplicates too with `near_duplicates`).
        skip_bad_rows: drop rows with errors instead of refusing the file.
        augment: a function from training examples to extra (augmented) examples.
        output_dir: where to `save` the result, if given; never a folder where that would
            write over `path` or `validation_path`.

    Raises:
        DatasetError: the data has errors (its `report` says which and where); with
            `skip_bad_rows`, only when nothing usable is left; or `output_dir` would
            write over an input file (said before anything is read).
    """
    sources = tuple(str(p) for p in (path, validation_path) if p is not None)
    if output_dir is not None:
        check_output_dir(output_dir, sources)
    duplicates, policies = check_duplicate_policy(duplicates), resolve_missing_policies(missing)
    read = _with_tools(read or ReadOptions(), template, (template_options or {}).get("family"))
    scan = scan_file(path, read, keep=True, missing=policies, min_label_examples=min_label_examples)
    _refuse_if_broken(scan.report, skip_bad_rows)
    examples = _apply_duplicate_policy(scan, duplicates, near_duplicates)
    if validation_path is None:
        train, validation = _held_out(examples, scan, validation_fraction, split_by, stratify, seed)
    else:
        train, validation = _with_validation_file(examples, scan.report, validation_path, read,
                                                  policies, skip_bad_rows)
    if augment is not None:
        train = train + _augmented(augment(train), train, validation, scan)
    prepared = _rendered(scan, examples, train, validation, template, skip_bad_rows, sources,
                         template_options or {})
    if tokenizer is not None:
        _tokenize(prepared, tokenizer, sequence_length, skip_bad_rows)
    if output_dir is not None:
        prepared.save(output_dir)
    return prepared


def _with_tools(read: ReadOptions, template: Template | str | None,
                family: str | None) -> ReadOptions:
    """The read options, reading tool-call turns too where the chat format has them."""
    return dataclasses.replace(read, tools=read.tools or reads_tools(template, family))


def _with_validation_file(examples: list[Example], report: ValidationReport,
                          validation_path: str | os.PathLike, read: ReadOptions,
                          policies: dict[str, MissingPolicy], skip_bad_rows: bool
                          ) -> tuple[list[Example], list[Example]]:
    """(train, validation) with the validation examples read from their own file."""
    val_scan = scan_file(validation_path, ReadOptions(**{**read.__dict__, "format": None}),
                         keep=True, missing=policies, min_label_examples=0)
    report.merge(val_scan.report)
    _refuse_if_broken(report, skip_bad_rows)
    _report_split_leaks(examples, val_scan.examples, report, str(validation_path))
    return examples, val_scan.examples


def _held_out(examples: list[Example], scan, validation_fraction: float,
              split_by: str | None, stratify: bool | None,
              seed: int) -> tuple[list[Example], list[Example]]:
    """(train, validation) with a fraction of the examples held out for validation."""
    if stratify is None:
        stratify = scan.mapping.task == "classification" and split_by is None
    train, validation = split_examples(examples, validation_fraction=validation_fraction,
                                       seed=seed, by=split_by, stratify=stratify)
    _report_split_leaks(train, validation, scan.report, scan.report.source)
    return train, validation


def _report_split_leaks(train: list[Example], validation: list[Example],
                        report: ValidationReport, val_file: str) -> None:
    for example, train_row in find_split_leaks(train, validation):
        report.warning("split_leak", f"this prompt is also in training row {train_row}",
                       file=val_file, line=example.line, row=example.row)


def _rendered(scan, examples: list[Example], train: list[Example],
              validation: list[Example], template: Template | str | None,
              skip_bad_rows: bool, sources: tuple[str, ...],
              options: dict) -> PreparedDataset:
    """The dataset with its template resolved and every example it cannot render dropped
    (each an error; refused unless `skip_bad_rows`); a template in another family's chat
    format than the model's is a warning (``template_family``)."""
    report, mapping = scan.report, scan.mapping
    labels = sorted({e.label for e in examples if e.label is not None})
    template = resolve_template(template, mapping.task, labels, **options)
    mismatch = family_mismatch(template, options.get("family"))
    if mismatch:
        report.warning("template_family", mismatch)
    train, validation = (_renderable(template, split, report) for split in (train, validation))
    _refuse_if_broken(report, skip_bad_rows)
    return PreparedDataset(train, validation, mapping, template, report, sources=sources)


def _augmented(extra: Sequence[Example], train: Sequence[Example],
               validation: Sequence[Example], scan) -> list[Example]:
    """Augmented rows that may join training, numbered after every row of the scanned file.

    A variant that repeats a validation prompt would leak it into training, and one that
    repeats a training row adds nothing: both are dropped and counted.
    """
    first_row, report = max((e.row for e in scan.examples), default=0) + 1, scan.report
    val_keys = {near_key(e.user_text) for e in validation}
    train_keys = {e.content_key() for e in train}
    kept, leaks, repeats = [], 0, 0
    for e in extra:
        if not e.augmented:
            continue
        if near_key(e.user_text) in val_keys:
            leaks += 1
        elif e.content_key() in train_keys:
            repeats += 1
        else:
            train_keys.add(e.content_key())
            kept.append(dataclasses.replace(e, row=first_row + len(kept)))
    if leaks or repeats:
        report.warning("augmented_dropped", f"{leaks} augmented row(s) repeated a validation "
                       f"prompt and {repeats} repeated a training row; they were not added")
    return kept


def preview_augmentation(
    path: str | os.PathLike,
    augment: Augmenter,
    *,
    rows: int = 5,
    read: ReadOptions | None = None,
    missing: str | MissingPolicy | dict | None = None,
) -> list[tuple[Example, list[Example]]]:
    """(original, its augmented variants) for the first `rows` usable examples of a file.

    Reads only those rows and writes nothing: for showing what augmentation would do
    before a run. Rows are numbered as `augment` numbers them, after the previewed ones.
    """
    originals = head_examples(path, read, rows, missing=missing)
    variants = [e for e in augment(originals) if e.augmented]
    return [(o, [v for v in variants if v.origin == o.row]) for o in originals]


def _refuse_if_broken(report: ValidationReport, skip_bad_rows: bool) -> None:
    fatal = any(report.has(code) for code in _FATAL) or report.rows_usable == 0
    if fatal or (not report.ok and not skip_bad_rows):
        hint = "" if fatal else " Fix them, or skip the bad rows (skip_bad_rows=True)."
        raise DatasetError(f"{report.source}: {report.n_errors} error(s) in the data.{hint}\n"
                           + report.to_text(), report)


def _renderable(template: Template, examples: list[Example],
                report: ValidationReport) -> list[Example]:
    """The examples the template can render; each one it cannot is an error."""
    kept = []
    for e in examples:
        try:
            template.segments(e)
        except DatasetError as exc:
            why = str(exc).removeprefix(f"row {e.row}: ")
            report.error("template_mismatch", f"{why} (template '{template.name}')",
                         line=e.line, row=e.row)
            report.rows_usable -= 1
            continue
        kept.append(e)
    return kept


def _apply_duplicate_policy(scan, policy: str, near: bool) -> list[Example]:
    validator = scan.validator
    if policy == "keep_all":
        return scan.examples
    if policy == "keep_first":
        drop = set(validator.duplicate_of)
        if near:
            drop |= set(validator.near_duplicate_of)
    else:
        drop = set(validator.duplicated_rows)
        if near:
            drop |= set(validator.near_duplicate_of) | set(validator.near_duplicate_of.values())
    return [e for e in scan.examples if e.row not in drop]


def _tokenize(prepared: PreparedDataset, tokenizer, sequence_length, skip_bad_rows) -> None:
    report = prepared.report
    stats = TokenStatistics(sequence_length)
    for split in ("train", "validation"):
        kept, tokens = [], []
        for example in getattr(prepared, split):
            tokenized = tokenize_example(example, prepared.template, tokenizer, sequence_length)
            problems = length_problems(tokenized, sequence_length)
            for severity, code, message in problems:
                getattr(report, severity)(code, message, line=example.line, row=example.row)
            if any(severity == "error" for severity, _, _ in problems):
                continue
            kept.append(example)
            tokens.append(tokenized)
            if split == "train":
                stats.add(tokenized)
        setattr(prepared, split, kept)
        setattr(prepared, f"{split}_tokens", tokens)
    prepared.token_stats = report.token_stats = stats.summary()
    _refuse_if_broken(report, skip_bad_rows)
