"""Turning an example into the text the model sees, split into trained and untrained parts.

A template returns `Segment`s; only segments marked `trained` count towards the loss.
Every trained segment ends with a stop token (end-of-turn in chat, end-of-sequence in
plain completion) added as a token id, not as text, so the tuned model learns to stop
and nothing in the data can fake the marker.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gemma_panel.data.example import Example
from gemma_panel.data.report import DatasetError

USER_TURN = "<start_of_turn>user\n"
MODEL_TURN = "<start_of_turn>model\n"
TURN_END = "<end_of_turn>"

Stop = Literal["end_of_turn", "eos"]


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text.

    Args:
        text: the text, which may contain turn-marker text from the template itself.
        trained: whether the loss covers this segment's tokens.
        stop: a stop token appended after the text (and trained with it).
    """

    text: str
    trained: bool
    stop: Stop | None = None


class Template(Protocol):
    name: str

    def segments(self, example: Example) -> list[Segment]: ...


@dataclass(frozen=True)
class GemmaChatTemplate:
    """Gemma's turn format; the model's turns are trained on, the user's are not.

    ``<start_of_turn>user\\n{prompt}<end_of_turn>\\n<start_of_turn>model\\n`` then the
    target ``{response}<end_of_turn>``. Gemma has no system role; a system message (or
    `system_prompt`) is put at the start of the first user turn, as Gemma's own chat
    template does.
    """

    system_prompt: str | None = None
    name: str = "gemma"

    def segments(self, example: Example) -> list[Segment]:
        if example.messages:
            turns = [(t.role, t.content) for t in example.messages]
        else:
            if example.response is None:
                raise DatasetError(f"row {example.row}: the chat template needs a response")
            turns = [("user", example.user_text), ("model", example.response)]
        system = self.system_prompt
        if turns and turns[0][0] == "system":
            system = turns[0][1]
            turns = turns[1:]
        out: list[Segment] = []
        for i, (role, content) in enumerate(turns):
            if role == "user":
                if system and not any(r == "user" for r, _ in turns[:i]):
                    content = f"{system}\n\n{content}"
                lead = "\n" if out else ""  # the newline that follows a model turn's end
                out.append(Segment(f"{lead}{USER_TURN}{content}{TURN_END}\n{MODEL_TURN}",
                                   trained=False))
            else:
                out.append(Segment(content, trained=True, stop="end_of_turn"))
        return out


@dataclass(frozen=True)
class CompletionTemplate:
    """Plain text, no turns: for continued pre-training or base-model style prompts.

    A text example is trained on whole; a prompt/response example is ``prompt +
    separator`` (untrained) then ``response`` (trained), each ending with end-of-sequence.
    """

    separator: str = "\n"
    name: str = "completion"

    def segments(self, example: Example) -> list[Segment]:
        if example.response is not None:
            return [Segment(example.user_text + self.separator, trained=False),
                    Segment(example.response, trained=True, stop="eos")]
        if example.text is None:
            raise DatasetError(f"row {example.row}: the completion template needs a text")
        return [Segment(example.text, trained=True, stop="eos")]


@dataclass(frozen=True)
class ClassificationTemplate:
    """A chat turn asking for one of the labels; the target is the label alone.

    Args:
        labels: every class, listed in the prompt so the model sees its choices.
        instruction: the question; ``{labels}`` is replaced by the comma-separated labels.
    """

    labels: tuple[str, ...]
    instruction: str = "Classify the text. Answer with one of: {labels}."
    name: str = "classification"

    def segments(self, example: Example) -> list[Segment]:
        if example.label is None:
            raise DatasetError(f"row {example.row}: the classification template needs a label")
        question = self.instruction.format(labels=", ".join(self.labels))
        prompt = f"{question}\n\nText: {example.user_text}"
        return [Segment(f"{USER_TURN}{prompt}{TURN_END}\n{MODEL_TURN}", trained=False),
                Segment(example.label, trained=True, stop="end_of_turn")]


@dataclass(frozen=True)
class CustomTemplate:
    """Your own prompt and response text with ``{field}`` slots.

    Fields are the roles (prompt, input, response, text, label) or any column of the
    file. With `chat` the prompt is wrapped in Gemma's turns; without, it is plain text.

    Example:

    ```python
    CustomTemplate(prompt="Translate to French: {english}", response="{french}")
    ```
    """

    prompt: str
    response: str
    chat: bool = True
    name: str = "custom"

    @property
    def fields(self) -> set[str]:
        names = set()
        for part in (self.prompt, self.response):
            names |= {f for _, f, _, _ in string.Formatter().parse(part) if f}
        return names

    def segments(self, example: Example) -> list[Segment]:
        values = dict(example.fields)
        values.update({k: v for k, v in example.to_dict().items() if isinstance(v, str)})
        try:
            prompt = self.prompt.format_map(values)
            response = self.response.format_map(values)
        except KeyError as exc:
            raise DatasetError(f"row {example.row}: the template uses {{{exc.args[0]}}}, "
                               f"but the row has no such field") from None
        if self.chat:
            return [Segment(f"{USER_TURN}{prompt}{TURN_END}\n{MODEL_TURN}", trained=False),
                    Segment(response, trained=True, stop="end_of_turn")]
        return [Segment(prompt, trained=False), Segment(response, trained=True, stop="eos")]


def template_for_task(
    task: str | None, labels: Sequence[str] = (), system_prompt: str | None = None
) -> Template:
    """The default template for what the data can train."""
    if task == "classification":
        return ClassificationTemplate(tuple(labels))
    if task == "completion":
        return CompletionTemplate()
    return GemmaChatTemplate(system_prompt=system_prompt)


def get_template(name: str, *, labels: Sequence[str] = (), **options) -> Template:
    """A template by name: ``gemma``, ``completion``, ``classification``."""
    if name in ("gemma", "chat"):
        return GemmaChatTemplate(**options)
    if name == "completion":
        return CompletionTemplate(**options)
    if name == "classification":
        return ClassificationTemplate(tuple(labels), **options)
    raise DatasetError(f"unknown template {name!r}; use gemma, completion or classification, "
                       "or a CustomTemplate.")


def resolve_template(name: str | Template | None, task: str | None,
                     labels: Sequence[str] = ()) -> Template:
    """The template a recipe's ``data.template`` names, for data of this task and labels.

    ``auto`` (or None) is the task's default; a name is that template, whatever the data.
    """
    if name is None or name == "auto":
        return template_for_task(task, labels)
    if isinstance(name, str):
        return get_template(name, labels=labels)
    return name


def suggested_template(task: str | None) -> str:
    """The template name ``auto`` picks for a task: what a dataset choice carries."""
    return template_for_task(task).name


def render_text(segments: Sequence[Segment]) -> str:
    """The segments as one string, stop tokens written out, for showing to people."""
    stops = {"end_of_turn": TURN_END, "eos": "<eos>", None: ""}
    return "".join(s.text + stops[s.stop] for s in segments)
