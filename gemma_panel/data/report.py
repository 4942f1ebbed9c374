"""The validation report: every problem found in a dataset, with where it is.

One structured object that the CLI prints (`to_text`) and the dashboard renders
(`to_dict`). A report over a million-row file must stay small, so it keeps a count of
every kind of problem but only the first few examples of each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gemma_panel.errors import UserError

Severity = Literal["error", "warning"]

# What each problem code means, in words; the report shows these as headings.
PROBLEM_TITLES: dict[str, str] = {
    "unreadable": "file cannot be read",
    "empty_file": "file is empty",
    "no_examples": "no examples in file",
    "binary_file": "file is not text",
    "encoding": "bytes not valid in the detected encoding",
    "nul_byte": "NUL bytes",
    "broken_json": "broken JSON",
    "not_an_object": "JSON value is not an object",
    "csv_field_count": "wrong number of CSV fields",
    "csv_unbalanced_quote": "unbalanced quote in CSV",
    "blank_lines": "blank lines skipped",
    "unknown_columns": "columns not recognised",
    "missing_value": "missing values",
    "empty_string": "empty strings",
    "wrong_type": "values of the wrong type",
    "bad_messages": "malformed chat messages",
    "tool_calls": "tool-calling conversations (not plain chat)",
    "template_family": "a chat format not the model family's",
    "preference_data": "preference data (chosen/rejected answers)",
    "control_token": "Gemma control-token text inside a field",
    "non_text": "binary or non-text content",
    "replacement_char": "replacement characters (text already damaged)",
    "mojibake": "mojibake (UTF-8 read as Latin-1/cp1252)",
    "duplicate": "exact duplicates",
    "near_duplicate": "near duplicates",
    "overlong": "examples longer than the sequence length",
    "no_target": "nothing left to train on after truncation",
    "template_mismatch": "rows the template cannot render",
    "rare_label": "label classes with too few examples",
    "single_label": "only one label class",
    "split_leak": "same prompt in training and validation",
    "augmented_dropped": "augmented rows not added",
    "images": "rows with images",
    "image_training": "image data this run cannot train",
    "image_missing": "image files missing",
    "image_unreadable": "images that do not decode",
    "image_too_small": "images too small",
    "image_too_large": "images too large",
    "image_url": "image URLs (not downloaded)",
    "image_count": "image placeholders not matching the images",
    "image_column_ignored": "an image-named column with no image paths",
    "images_ignored": "images the template does not use",
}


@dataclass(frozen=True)
class Problem:
    """One problem at one place in one file.

    Args:
        code: a key of `PROBLEM_TITLES`, e.g. ``"broken_json"``.
        severity: ``"error"`` stops training from starting; ``"warning"`` does not.
        message: what is wrong and, where it helps, what to do about it.
        file: the file the problem is in.
        line: 1-based physical line in the file, where the format has lines.
        row: 1-based example number (the header of a CSV is not a row).
        column: the column or JSON key, where the problem is in one field.
    """

    code: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    row: int | None = None
    column: str | None = None

    def where(self) -> str:
        parts = [self.file or "<data>"]
        if self.line is not None:
            parts.append(f"line {self.line}")
        elif self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.where()}: {self.severity}: {self.message}"


@dataclass
class ValidationReport:
    """All problems found in a dataset, counted by kind, with a few examples of each.

    Args:
        source: the file (or files) checked.
        max_examples: how many problems of each kind are kept in full; the rest are counted.

    Example:

    ```python
    report = check_dataset("examples/instruction/train.jsonl")
    print(report.to_text())
    if not report.ok:
        raise SystemExit(1)
    ```
    """

    source: str = ""
    max_examples: int = 20
    rows_read: int = 0
    rows_usable: int = 0
    format: str | None = None
    encoding: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    task: str | None = None
    label_counts: dict[str, int] = field(default_factory=dict)
    token_stats: dict[str, Any] | None = None
    counts: Counter = field(default_factory=Counter)
    severities: dict[str, Severity] = field(default_factory=dict)
    examples: dict[str, list[Problem]] = field(default_factory=dict)

    def add(self, problem: Problem) -> None:
        self.counts[problem.code] += 1
        # A kind of problem is an error if any instance of it is.
        if self.severities.get(problem.code) != "error":
            self.severities[problem.code] = problem.severity
        kept = self.examples.setdefault(problem.code, [])
        if len(kept) < self.max_examples:
            kept.append(problem)

    def error(self, code: str, message: str, **where: Any) -> None:
        self.add(Problem(code, "error", message, file=where.pop("file", self.source), **where))

    def warning(self, code: str, message: str, **where: Any) -> None:
        self.add(Problem(code, "warning", message, file=where.pop("file", self.source), **where))

    def add_issue(self, issue: Any, **where: Any) -> None:
        """Add a `TextIssue` (code, severity, message) found at `where`."""
        self.add(Problem(issue.code, issue.severity, issue.message,
                         file=where.pop("file", self.source), **where))

    def merge(self, other: ValidationReport) -> None:
        """Add another file's problems and counts (e.g. a separate validation file)."""
        self.rows_read += other.rows_read
        self.rows_usable += other.rows_usable
        for code, kept in other.examples.items():
            for problem in kept:
                self.add(problem)
            extra = other.counts[code] - len(kept)
            self.counts[code] += extra

    @property
    def problems(self) -> list[Problem]:
        """The kept examples of every kind, errors first."""
        out = [p for kept in self.examples.values() for p in kept]
        return sorted(out, key=lambda p: (p.severity != "error", p.code, p.line or p.row or 0))

    @property
    def n_errors(self) -> int:
        return sum(n for code, n in self.counts.items() if self.severities[code] == "error")

    @property
    def n_warnings(self) -> int:
        return sum(n for code, n in self.counts.items() if self.severities[code] == "warning")

    @property
    def ok(self) -> bool:
        """True when nothing stops training; warnings are allowed."""
        return self.n_errors == 0

    def has(self, code: str) -> bool:
        return self.counts.get(code, 0) > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data for the dashboard and `report.json`."""
        return {
            "source": self.source,
            "ok": self.ok,
            "format": self.format,
            "encoding": self.encoding,
            "task": self.task,
            "columns": dict(self.columns),
            "rows_read": self.rows_read,
            "rows_usable": self.rows_usable,
            "n_errors": self.n_errors,
            "n_warnings": self.n_warnings,
            "label_counts": dict(self.label_counts),
            "token_stats": self.token_stats,
            "kinds": [
                {
                    "code": code,
                    "title": PROBLEM_TITLES.get(code, code),
                    "severity": self.severities[code],
                    "count": self.counts[code],
                    "examples": [asdict(p) for p in self.examples.get(code, [])],
                }
                for code in self._codes_in_order()
            ],
        }

    def to_text(self, max_per_kind: int = 5) -> str:
        """The report as the CLI prints it: a summary line, then each kind with examples."""
        how = ", ".join(x for x in (self.format, self.encoding) if x)
        lines = [f"{self.source}: {self.rows_read} rows read" + (f" ({how})" if how else "")]
        if self.task:
            mapping = ", ".join(f"{role} <- {col!r}" for role, col in self.columns.items())
            lines.append(f"task: {self.task}; columns: {mapping}")
        for code in self._codes_in_order():
            sev, n = self.severities[code], self.counts[code]
            lines.append(f"{sev.upper()}: {PROBLEM_TITLES.get(code, code)} ({n})")
            for p in self.examples.get(code, [])[:max_per_kind]:
                note = f" ({p.severity})" if p.severity != sev else ""
                lines.append(f"  {p.where()}: {p.message}{note}")
            if n > max_per_kind:
                lines.append(f"  ... and {n - max_per_kind} more")
        if self.token_stats:
            ts = self.token_stats
            lines.append(
                f"tokens: mean {ts['total']['mean']:.0f}, max {ts['total']['max']}, "
                f"{ts['truncated_share']:.1%} truncated at {ts['sequence_length']}, "
                f"{ts['tokens_per_epoch']} tokens per epoch"
            )
        verdict = "OK" if self.ok else "NOT READY"
        lines.append(f"{verdict}: {self.n_errors} errors, {self.n_warnings} warnings, "
                     f"{self.rows_usable} usable rows")
        return "\n".join(lines)

    def _codes_in_order(self) -> list[str]:
        return sorted(self.counts, key=lambda c: (self.severities[c] != "error", c))


class DatasetError(UserError, ValueError):
    """A problem a user can fix, in words.

    Args:
        message: what is wrong, where, and what to do.
        report: the full report, when one explains the error.
        code: the kind of problem, a key of `PROBLEM_TITLES`.
    """

    def __init__(self, message: str, report: ValidationReport | None = None,
                 code: str = "unreadable"):
        super().__init__(message)
        self.report = report
        self.code = code
