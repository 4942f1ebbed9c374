"""Row-by-row validation: records in, examples and problems out, in one pass.

`RowValidator` holds only what a streaming check must remember (hashes for duplicates,
label counts, token lengths), so a file of a million rows is checked in bounded memory.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from typing import Any

import numpy as np

from gemma_panel.data.columns import ColumnMapping
from gemma_panel.data.example import Example, near_key
from gemma_panel.data.messages import normalize_messages, tool_roles
from gemma_panel.data.policies import MissingPolicy
from gemma_panel.data.report import ValidationReport
from gemma_panel.data.sources import Record
from gemma_panel.data.stats import TokenStatistics
from gemma_panel.data.templates import Template
from gemma_panel.data.text_checks import inspect_text
from gemma_panel.data.tokenized import length_problems, tokenize_example
from gemma_panel.data.tokenizer import TextTokenizer


class RowValidator:
    """Checks records one at a time; call `finish` after the last.

    Args:
        report: where problems go.
        mapping: which column plays which role.
        missing: per-role policies (key ``"*"`` for all roles); without one, a missing
            required value is an error that names the policies that would resolve it.
        template, tokenizer, sequence_length: when all given, every example is tokenized
            and examples longer than `sequence_length` are reported.
        max_chars: without a tokenizer, report examples longer than this many characters.
        min_label_examples: label classes with fewer examples are reported.
        tools: read chat messages' tool calls and results (the model's format has them).
    """

    def __init__(
        self,
        report: ValidationReport,
        mapping: ColumnMapping,
        *,
        missing: dict[str, MissingPolicy] | None = None,
        template: Template | None = None,
        tokenizer: TextTokenizer | None = None,
        sequence_length: int | None = None,
        max_chars: int | None = None,
        min_label_examples: int = 5,
        tools: bool = False,
    ):
        self.report = report
        self.mapping = mapping
        self._roles = list(mapping.as_dict().items())  # asdict per row would dominate
        self._messages_column = mapping.messages
        self._required = mapping.required
        self.missing = missing or {}
        self.template = template
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.max_chars = max_chars
        self.min_label_examples = min_label_examples
        self.tools = tools
        self.labels: Counter = Counter()
        self._label_first: dict[str, tuple[int, int | None]] = {}
        self.stats = TokenStatistics(sequence_length) if tokenizer and template else None
        self._exact, self._near = array("q"), array("q")
        self._rows, self._lines = array("q"), array("q")
        self.duplicate_of: dict[int, int] = {}  # exact duplicate row -> its first row
        self.near_duplicate_of: dict[int, int] = {}
        self.duplicated_rows: set[int] = set()  # every row in a group of exact duplicates

    def check(self, record: Record) -> Example | None:
        """The record as an `Example`, or None when it cannot be used."""
        self.report.rows_read += 1
        if record.broken:
            return None
        where = {"line": record.line, "row": record.row}
        values: dict[str, Any] = {}
        required = self._required
        usable = True
        for role, col in self._roles:
            value = record.values.get(col)
            if role == "messages":
                value = self._messages(value, col, where)
                usable = usable and value is not None
                values[role] = value
                continue
            value, ok = self._text_value(role, col, value, record, where, role in required)
            usable = usable and ok
            values[role] = value
        if not usable:
            return None
        example = Example(
            **values,
            fields={k: str(v) for k, v in record.values.items() if v is not None},
            row=record.row, line=record.line, message_images=self._message_images(record),
        )
        key = example.content_key()
        if not self._check_length(example, key, where):
            return None
        self._remember(example, key)
        self.report.rows_usable += 1
        return example

    def _message_images(self, record: Record) -> tuple[str, ...]:
        """The image references in the row's messages (for its duplicate key)."""
        from gemma_panel.data.images import row_image_refs

        if self._messages_column is None:
            return ()
        return tuple(map(str, row_image_refs(record.values, None, self._messages_column)))

    def _text_value(self, role, col, value, record, where, required) -> tuple[Any, bool]:
        report = self.report
        empty = value is None or (isinstance(value, str) and not value.strip())
        if empty and required:
            policy = self.missing.get(role) or self.missing.get("*")
            code = "missing_value" if value is None else "empty_string"
            what = "missing" if value is None else "empty"
            if policy is None:
                report.error(code, f"{role} is {what}; choose a missing-value policy (drop, "
                             "fill:TEXT, column:NAME, keep) or fix the row", column=col, **where)
                return None, False
            if policy.action == "column":
                value = record.values.get(policy.column)
                if value is None or (isinstance(value, str) and not value.strip()):
                    report.error(code, f"{role} is {what}, and so is {policy.column!r}",
                                 column=col, **where)
                    return None, False
            elif policy.action == "fill":
                value = policy.value
            elif policy.action == "keep":
                value = ""
            report.warning(code, f"{role} is {what}: {policy.describe()}", column=col, **where)
            if policy.action == "drop":
                return None, False
        if value is None:
            return None, True
        if isinstance(value, (dict, list)):
            report.error("wrong_type", f"{role} should be text, found "
                         f"{'an object' if isinstance(value, dict) else 'a list'}",
                         column=col, **where)
            return None, False
        if not isinstance(value, str):
            if role != "label":
                report.warning("wrong_type", f"{role} is {type(value).__name__} {value!r}, "
                               "not text; it was converted", column=col, **where)
            value = str(value)
        for issue in inspect_text(value):
            report.add_issue(issue, column=col, **where)
            if issue.severity == "error":
                return None, False
        return value, True

    def _messages(self, value, col, where):
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                value = json.loads(value)  # a JSON list stored in a CSV cell
            except RecursionError:
                self.report.error("bad_messages", "messages are nested too deeply to read",
                                  column=col, **where)
                return None
            except json.JSONDecodeError as exc:
                self.report.error("bad_messages", f"messages are not valid JSON: {exc.msg} at "
                                  f"character {exc.colno}", column=col, **where)
                return None
        if value is None:
            self.report.error("missing_value", "messages are missing", column=col, **where)
            return None
        turns, problems = normalize_messages(value, tools=self.tools)
        code = "tool_calls" if problems and tool_roles(value) else "bad_messages"
        for problem in problems:
            self.report.error(code, problem, column=col, **where)
        for turn in turns:
            for issue in inspect_text(turn.content):
                self.report.add_issue(issue, column=col, **where)
                if issue.severity == "error":
                    return None
        return None if problems else turns

    def _check_length(self, example: Example, key: str, where: dict) -> bool:
        if self.stats is not None:
            tokenized = tokenize_example(example, self.template, self.tokenizer,
                                         self.sequence_length)
            self.stats.add(tokenized)
            for severity, code, message in length_problems(tokenized, self.sequence_length):
                getattr(self.report, severity)(code, message, **where)
                if severity == "error":
                    return False
        elif self.max_chars is not None:
            n = sum(len(t.content) for t in example.messages) if example.messages else len(
                key)
            if n > self.max_chars:
                self.report.warning("overlong", f"{n} characters, over the limit of "
                                    f"{self.max_chars}", **where)
        return True

    def _remember(self, example: Example, key: str) -> None:
        self._exact.append(hash(key))
        self._near.append(hash(near_key(key)))
        self._rows.append(example.row)
        self._lines.append(example.line if example.line is not None else -1)
        if example.label is not None and example.messages is None:
            self.labels[example.label] += 1
            self._label_first.setdefault(example.label, (example.row, example.line))

    def finish(self) -> None:
        """Report duplicates and label classes; call once after the last record."""
        report = self.report
        exact = np.frombuffer(self._exact, dtype=np.int64)
        near = np.frombuffer(self._near, dtype=np.int64)
        rows = np.frombuffer(self._rows, dtype=np.int64)
        lines = np.frombuffer(self._lines, dtype=np.int64)
        for first, dup in _duplicate_pairs(exact):
            self.duplicate_of[int(rows[dup])] = int(rows[first])
            self.duplicated_rows.update((int(rows[first]), int(rows[dup])))
            report.warning("duplicate", f"same as row {rows[first]}"
                           + (f" (line {lines[first]})" if lines[first] >= 0 else ""),
                           line=_line(lines[dup]), row=int(rows[dup]))
        for first, dup in _duplicate_pairs(near):
            if exact[first] == exact[dup]:
                continue
            self.near_duplicate_of[int(rows[dup])] = int(rows[first])
            report.warning("near_duplicate", f"differs from row {rows[first]} only in case, "
                           "punctuation or spacing", line=_line(lines[dup]), row=int(rows[dup]))
        if self.labels:
            report.label_counts = dict(self.labels.most_common())
            if len(self.labels) == 1:
                report.error("single_label", f"every example has label "
                             f"{next(iter(self.labels))!r}: there is nothing to classify")
            for label, n in self.labels.items():
                if n < self.min_label_examples:
                    row, line = self._label_first[label]
                    report.warning("rare_label", f"label {label!r} has only {n} example(s) "
                                   f"(fewer than {self.min_label_examples}); the model will "
                                   "rarely predict it", row=row, line=line,
                                   column=self.mapping.label)
        if self.stats is not None and len(self.stats):
            report.token_stats = self.stats.summary()


def _duplicate_pairs(keys: np.ndarray) -> list[tuple[int, int]]:
    """(index of the first occurrence, index of a later one) for every repeated key."""
    n = len(keys)
    if n < 2:
        return []
    order = np.argsort(keys, kind="stable")  # stable: a group's first index is its first row
    ordered = keys[order]
    is_start = np.r_[True, ordered[1:] != ordered[:-1]]
    group_start = np.maximum.accumulate(np.where(is_start, np.arange(n), 0))
    later = np.flatnonzero(~is_start)
    pairs = zip(order[group_start[later]].tolist(), order[later].tolist())
    return sorted(pairs, key=lambda p: p[1])


def _line(value: int) -> int | None:
    return int(value) if value >= 0 else None
