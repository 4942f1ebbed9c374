"""Which column is the prompt, the response, the text, the label or the chat messages.

The guess comes from the column names; it is shown to the user and any part of it can be
overridden, because a wrong guess is cheaper to fix than to discover after training.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from gemma_panel.data.report import DatasetError

ROLES = ("prompt", "input", "response", "text", "label", "messages")

# Names seen in public datasets (Alpaca, Dolly, OpenAI chat, ShareGPT, GLUE-style, and
# TFDS features such as SQuAD's question/context/answers, CNN/DailyMail's article/highlights,
# T5-style inputs/targets; nested TFDS features are flattened to "parent/child"),
# most specific first: the first match for a role wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "messages": ("messages", "conversations", "conversation", "chat", "dialog", "dialogue",
                 "turns"),
    "prompt": ("prompt", "instruction", "question", "query", "request", "user", "human",
               "input_text", "inputs", "source"),
    "input": ("input", "context", "passage", "knowledge"),
    "response": ("response", "output", "answer", "completion", "target", "targets", "chosen",
                 "assistant", "reply", "output_text", "gpt", "summary", "highlights",
                 "answers/text", "answer/text"),
    "text": ("text", "content", "sentence", "document", "body", "review", "tweet", "article"),
    "label": ("label", "labels", "class", "category", "sentiment", "intent", "topic"),
}

@dataclass(frozen=True)
class ColumnMapping:
    """The column that plays each role; None where a role is absent.

    Args:
        prompt: what the user asks (instruction, question).
        input: optional extra context, appended to the prompt (Alpaca's ``input``).
        response: what the model should answer.
        text: free text: the whole example for completion, or the text to classify.
        label: the class, for classification.
        messages: a list of chat turns (OpenAI role/content or ShareGPT from/value).
    """

    prompt: str | None = None
    input: str | None = None
    response: str | None = None
    text: str | None = None
    label: str | None = None
    messages: str | None = None

    @property
    def task(self) -> str | None:
        """What the mapped columns can train: chat, instruction, classification, completion."""
        if self.messages:
            return "chat"
        if self.label and (self.text or self.prompt):
            return "classification"
        if self.prompt and self.response:
            return "instruction"
        if self.text:
            return "completion"
        return None

    @property
    def required(self) -> tuple[str, ...]:
        """The roles every row must have a value for, given the task."""
        return {
            "chat": ("messages",),
            "instruction": ("prompt", "response"),
            "classification": ("text" if self.text else "prompt", "label"),
            "completion": ("text",),
        }.get(self.task or "", ())

    def as_dict(self) -> dict[str, str]:
        return {role: col for role, col in asdict(self).items() if col}


def detect_columns(
    columns: Sequence[str], overrides: Mapping[str, str | None] | None = None
) -> ColumnMapping:
    """Guess the role of each column from its name, then apply `overrides`.

    Args:
        columns: the column names of the file (CSV header, JSON keys).
        overrides: role to column name, e.g. ``{"prompt": "q", "response": "a"}``; a
            role mapped to None is not used even if a column looks like it.

    Raises:
        DatasetError: an override names a column the file does not have, no task can be
            trained from the columns (the message lists the columns found), or the file
            holds preference data (chosen and rejected answers) and no override says
            which answers to train on.
    """
    normal = {_normalise(c): c for c in columns}
    _refuse_preference_data(normal, overrides or {})
    found: dict[str, str] = {}
    used: set[str] = set()
    for role in ("messages", "prompt", "input", "response", "text", "label"):
        for alias in _ALIASES[role]:
            col = normal.get(alias)
            if col is not None and col not in used:
                found[role] = col
                used.add(col)
                break
    # Alpaca without an instruction, and summarisation data: the input is the prompt.
    if "prompt" not in found and "response" in found:
        for role in ("input", "text"):
            if role in found:
                found["prompt"] = found.pop(role)
                break
    mapping = ColumnMapping(**found)
    if overrides:
        mapping = apply_overrides(mapping, overrides, columns)
    if mapping.task is None:
        raise DatasetError(_no_task_message(columns), code="unknown_columns")
    return mapping


def _refuse_preference_data(normal: Mapping[str, str], overrides: Mapping[str, str | None]):
    """Chosen/rejected pairs (DPO-style data) are not instruction data with an extra column:
    say so, unless an override already picks the answers to train on."""
    if "chosen" not in normal or "rejected" not in normal:
        return
    chosen, rejected = normal["chosen"], normal["rejected"]
    picked = set(overrides.values())
    if {"response", "messages"} & set(overrides) or {chosen, rejected} & picked:
        return
    raise DatasetError(
        f"preference data (columns {chosen!r} and {rejected!r}): gemma_panel does supervised "
        f"fine-tuning, not preference tuning; train on the chosen answers with --column "
        f"response={chosen} (or --column messages={chosen} when each holds a whole "
        "conversation), or wait for preference tuning.", code="preference_data")


def apply_overrides(
    mapping: ColumnMapping, overrides: Mapping[str, str | None], columns: Sequence[str]
) -> ColumnMapping:
    for role, col in overrides.items():
        if role not in ROLES:
            raise DatasetError(f"unknown column role {role!r}; roles are {', '.join(ROLES)}.",
                               code="unknown_columns")
        if col is not None and col not in columns:
            near = difflib.get_close_matches(col, list(columns), n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise DatasetError(f"column {col!r} (given for {role}) is not in the file; its "
                               f"columns are {_listing(columns)}.{hint}", code="unknown_columns")
    return replace(mapping, **dict(overrides))


def parse_overrides(specs: Sequence[str]) -> dict[str, str | None]:
    """``["prompt=q", "label="]`` (as the CLI takes them) to ``{"prompt": "q", "label": None}``."""
    out: dict[str, str | None] = {}
    for spec in specs:
        role, sep, col = spec.partition("=")
        if not sep:
            raise DatasetError(f"column mapping {spec!r} must look like ROLE=COLUMN.")
        out[role.strip()] = col.strip() or None
    return out


def _no_task_message(columns: Sequence[str]) -> str:
    if not columns:
        return "the file has no columns."
    guesses = []
    for col in columns:
        for role, aliases in _ALIASES.items():
            near = difflib.get_close_matches(_normalise(col), aliases, n=1, cutoff=0.75)
            if near:
                guesses.append(f"{col!r} looks like {role} ({near[0]!r})")
                break
    hint = f" Perhaps: {'; '.join(guesses)}." if guesses else ""
    return (
        f"no columns recognised: found {_listing(columns)}, but training needs a prompt and "
        "a response, a text (and optionally a label), or chat messages. Name the columns "
        "that way, or map them, e.g. columns={'prompt': 'COL', 'response': 'COL'} "
        f"(CLI: --column prompt=COL --column response=COL).{hint}"
    )


def _listing(columns: Sequence[str]) -> str:
    shown = ", ".join(repr(c) for c in list(columns)[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")
