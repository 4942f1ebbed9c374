"""Turning an example into the text the model sees, split into trained and untrained parts.

A template returns `Segment`s; only segments marked `trained` count towards the loss.
Every trained segment ends with a stop token (end-of-turn in chat, end-of-sequence in
plain completion) added as a token id, not as text, so the tuned model learns to stop
and nothing in the data can fake the marker.

Chat formats differ by model family (`TurnFormat`): Gemma 1, 2, 3 and 3n write
``<start_of_turn>user`` ... ``<end_of_turn>`` and have no system role; Gemma 4 writes
``<|turn>user`` ... ``<turn|>``, has a system role and a thinking channel
(`Gemma4ChatTemplate`). `template_for_task` and `resolve_template` pick by ``family``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from gemma_panel.data.example import Example
from gemma_panel.data.report import DatasetError

USER_TURN = "<start_of_turn>user\n"
MODEL_TURN = "<start_of_turn>model\n"
TURN_END = "<end_of_turn>"

Stop = Literal["end_of_turn", "eos"]


@dataclass(frozen=True)
class TurnFormat:
    """A family's turn markers: ``{start}{role}\\n{content}{end}\\n``.

    Args:
        name: the template name that uses it (``gemma``, ``gemma4``).
        start, end: the begin- and end-of-turn tokens; `end` is the chat stop token.
    """

    name: str
    start: str
    end: str

    def open(self, role: str) -> str:
        return f"{self.start}{role}\n"

    def prompt(self, user_text: str) -> str:
        """A user turn and the model turn's opening: the untrained part of one exchange."""
        return f"{self.open('user')}{user_text}{self.end}\n{self.open('model')}"


GEMMA_TURNS = TurnFormat("gemma", "<start_of_turn>", TURN_END)
GEMMA4_TURNS = TurnFormat("gemma4", "<|turn>", "<turn|>")
# Model families and their chat format; any other family (gemma, gemma2, gemma3, gemma3n)
# uses Gemma's.
FAMILY_TURNS = {"gemma4": GEMMA4_TURNS}



def turns_for_family(family: str | None) -> TurnFormat:
    return FAMILY_TURNS.get(family or "", GEMMA_TURNS)


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
    end_of_turn: str = TURN_END  # the text of the end-of-turn token, for `render_text`


class Template(Protocol):
    name: str

    def segments(self, example: Example) -> list[Segment]: ...


@dataclass(frozen=True)
class GemmaChatTemplate:
    """Gemma 1, 2, 3 and 3n's turn format; the model's turns are trained on, the user's are not.

    ``<start_of_turn>user\\n{prompt}<end_of_turn>\\n<start_of_turn>model\\n`` then the
    target ``{response}<end_of_turn>``. These Gemmas have no system role: a system message
    (or `system_prompt`) is put at the start of the first user turn followed by a blank
    line, as their own chat template does. Gemma 4 has a real system turn: see
    `Gemma4ChatTemplate`.
    """

    system_prompt: str | None = None
    name: str = "gemma"
    turns: ClassVar[TurnFormat] = GEMMA_TURNS

    def segments(self, example: Example) -> list[Segment]:
        system, turns = _split_system(conversation_pairs(example), self.system_prompt)
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


def conversation_pairs(example: Example) -> list[tuple[str, str]]:
    """(role, content) pairs: the example's messages, or its prompt and response."""
    if example.messages:
        return [(t.role, t.content) for t in example.messages]
    if example.response is None:
        raise DatasetError(f"row {example.row}: the chat template needs a response")
    return [("user", example.user_text), ("model", example.response)]


def _split_system(turns: list[tuple[str, str]], default: str | None):
    """The system text (a leading system message, else `default`) and the other turns."""
    if turns and turns[0][0] == "system":
        return turns[0][1], turns[1:]
    return default, turns


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
    turns: TurnFormat = GEMMA_TURNS

    def segments(self, example: Example) -> list[Segment]:
        if example.label is None:
            raise DatasetError(f"row {example.row}: the classification template needs a label")
        question = self.instruction.format(labels=", ".join(self.labels))
        prompt = f"{question}\n\nText: {example.user_text}"
        return [Segment(self.turns.prompt(prompt), trained=False),
                Segment(example.label, trained=True, stop="end_of_turn",
                        end_of_turn=self.turns.end)]


@dataclass(frozen=True)
class CustomTemplate:
    """Your own prompt and response text with ``{field}`` slots.

    Fields are the roles (prompt, input, response, text, label) or any column of the
    file. With `chat` the prompt is wrapped in the model family's turns (`turns`); without,
    it is plain text.

    Example:

    ```python
    CustomTemplate(prompt="Translate to French: {english}", response="{french}")
    ```
    """

    prompt: str
    response: str
    chat: bool = True
    name: str = "custom"
    turns: TurnFormat = GEMMA_TURNS

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
            return [Segment(self.turns.prompt(prompt), trained=False),
                    Segment(response, trained=True, stop="end_of_turn",
                            end_of_turn=self.turns.end)]
        return [Segment(prompt, trained=False), Segment(response, trained=True, stop="eos")]


def template_for_task(
    task: str | None, labels: Sequence[str] = (), system_prompt: str | None = None, *,
    family: str | None = None, thinking: bool = False, empty_thought: bool = False,
) -> Template:
    """The default template for what the data can train, in the model family's chat format.

    Args:
        family: the model's registry family (``gemma3``, ``gemma4``, ...); None is Gemma 3's.
        thinking, empty_thought: `Gemma4ChatTemplate`'s switches (Gemma 4 only).
    """
    from gemma_panel.data.templates_gemma4 import Gemma4ChatTemplate

    turns = turns_for_family(family)
    if task == "classification":
        return ClassificationTemplate(tuple(labels), turns=turns)
    if task == "completion":
        return CompletionTemplate()
    if turns is GEMMA4_TURNS:
        return Gemma4ChatTemplate(system_prompt, thinking=thinking, empty_thought=empty_thought)
    return GemmaChatTemplate(system_prompt=system_prompt)


def get_template(name: str, *, labels: Sequence[str] = (), family: str | None = None,
                 **options) -> Template:
    """A template by name: ``gemma``, ``gemma4``, ``completion``, ``classification``."""
    from gemma_panel.data.templates_gemma4 import Gemma4ChatTemplate

    if name in ("gemma", "chat"):
        return GemmaChatTemplate(**options)
    if name == "gemma4":
        return Gemma4ChatTemplate(**options)
    if name == "completion":
        return CompletionTemplate(**options)
    if name == "classification":
        return ClassificationTemplate(tuple(labels), turns=turns_for_family(family), **options)
    raise DatasetError(f"unknown template {name!r}; use gemma, gemma4, completion or "
                       "classification, or a CustomTemplate.")


def resolve_template(name: str | Template | None, task: str | None,
                     labels: Sequence[str] = (), *, family: str | None = None,
                     thinking: bool = False, empty_thought: bool = False) -> Template:
    """The template a recipe's ``data.template`` names, for data of this task and labels.

    ``auto`` (or None) is the task's default in the model family's format; a name is that
    template, whatever the data. ``family`` and ``empty_thought`` come from the model's
    registry entry (`ModelSpec.template_options`), ``thinking`` from the recipe.
    """
    if name is None or name == "auto":
        return template_for_task(task, labels, family=family, thinking=thinking,
                                 empty_thought=empty_thought)
    if isinstance(name, str):
        options = ({"thinking": thinking, "empty_thought": empty_thought}
                   if name == "gemma4" else {})
        return get_template(name, labels=labels, family=family, **options)
    return name


def family_mismatch(template: Template, family: str | None) -> str | None:
    """What is wrong when a template's chat format is not the model family's, else None.

    Completion templates have no turns and fit every family.
    """
    turns = getattr(template, "turns", None)
    if turns is None or (family or "") == "":
        return None
    if getattr(template, "chat", True) is False:
        return None
    expected = turns_for_family(family)
    if turns == expected:
        return None
    return (f"the template writes {turns.start}...{turns.end} turns, but {family} models were "
            f"trained on {expected.start}...{expected.end}; use template 'auto' (or "
            f"'{expected.name}') so the tuned model sees its own chat format")


def reads_tools(template: str | Template | None, family: str | None) -> bool:
    """Whether data for this template and model family may hold tool-call turns: only
    Gemma 4's chat format has them (a named template's own format wins)."""
    if isinstance(template, str) and template not in ("auto", "gemma4"):
        return False
    if template is None or isinstance(template, str):
        return template == "gemma4" or turns_for_family(family) is GEMMA4_TURNS
    return getattr(template, "turns", None) is GEMMA4_TURNS


def suggested_template(task: str | None) -> str:
    """The template name ``auto`` picks for a task: what a dataset choice carries."""
    return template_for_task(task).name


def render_text(segments: Sequence[Segment]) -> str:
    """The segments as one string, stop tokens written out, for showing to people."""
    stops = {"eos": "<eos>", None: ""}
    return "".join(s.text + (s.end_of_turn if s.stop == "end_of_turn" else stops[s.stop])
                   for s in segments)
