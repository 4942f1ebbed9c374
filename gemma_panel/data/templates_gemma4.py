"""Gemma 4's chat format: ``<|turn>``/``<turn|>`` turns, a system role, thinking, tool calls.

`Gemma4ChatTemplate` writes a conversation as Gemma 4's published chat template does, and
says which parts are trained: the model's answers and tool calls, never the prompt, the
system turn or a tool's results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gemma_panel.data.example import Example
from gemma_panel.data.gemma4_tools import TOOL_RESPONSE_OPEN, tool_call_text, tool_response_body
from gemma_panel.data.messages import Turn
from gemma_panel.data.templates import GEMMA4_TURNS, Segment, TurnFormat, conversation_pairs

THINK = "<|think|>"
EMPTY_THOUGHT = "<|channel>thought\n<channel|>"


@dataclass(frozen=True)
class Gemma4ChatTemplate:
    """Gemma 4's chat format: ``<|turn>``/``<turn|>`` markers and a real system turn.

    A conversation is written as Gemma 4's published chat template writes it (the tokenizer
    adds ``<bos>``)::

        <|turn>system\\n{system}<turn|>\\n     only with a system message, or thinking on
        <|turn>user\\n{prompt}<turn|>\\n
        <|turn>model\\n{response}<turn|>\\n   ... and so on, turn by turn

    Each content is stripped of surrounding whitespace, as that template does. Only the
    model turns' ``{response}<turn|>`` are trained.

    Args:
        system_prompt: the system turn when the example has no system message.
        thinking: open the system turn with ``<|think|>``, which switches the model's thinking
            channel on. Off by default: data without reasoning traces would teach a model
            that was asked to think to answer without thinking.
        empty_thought: with thinking off, open every model turn with an empty thought
            channel ``<|channel>thought\\n<channel|>`` (untrained): how the larger Gemma 4
            models (26B-A4B, 31B) are prompted when thinking is off; E2B and E4B are not.
    """

    system_prompt: str | None = None
    thinking: bool = False
    empty_thought: bool = False
    name: str = "gemma4"
    turns: ClassVar[TurnFormat] = GEMMA4_TURNS

    def segments(self, example: Example) -> list[Segment]:
        t = GEMMA4_TURNS
        turns = example.messages or [Turn(r, c) for r, c in conversation_pairs(example)]
        system, turns = _split_system_turns(turns, self.system_prompt)
        out: list[Segment] = []
        if system is not None or self.thinking:
            think = f"{THINK}\n" if self.thinking else ""
            out.append(Segment(f"{t.open('system')}{think}{(system or '').strip()}{t.end}\n",
                               trained=False))
        primer = EMPTY_THOUGHT if self.empty_thought and not self.thinking else ""
        for i, turn in enumerate(turns):
            if turn.role == "user":
                out.append(Segment(f"{t.open('user')}{turn.content.strip()}{t.end}\n", False))
            elif turn.role == "model":
                if i == 0 or turns[i - 1].role != "tool":  # else it continues the model turn
                    out.append(Segment(f"{t.open('model')}{primer}", trained=False))
                out.extend(_gemma4_model_turn(turn, _results_after(turns, i)))
        return _merged(out)
def _gemma4_model_turn(turn: Turn, results: list[Turn]) -> list[Segment]:
    """A model turn's calls, the tool results that answer them, and its answer.

    Trained: the calls with the ``<|tool_response>`` token the model writes after them, and
    the answer with ``<turn|>``. The results themselves are the tool's, so untrained. With
    results but no answer the model turn goes on in the next model message.
    """
    answer = _strip_thinking(turn.content)
    stop = [Segment(answer, trained=True, stop="end_of_turn", end_of_turn=GEMMA4_TURNS.end),
            Segment("\n", trained=False)]
    if not turn.tool_calls:
        return stop
    calls = "".join(tool_call_text(c.name, c.arguments) for c in turn.tool_calls)
    if not results:
        return [Segment(calls + answer + TOOL_RESPONSE_OPEN, trained=True)]
    bodies = TOOL_RESPONSE_OPEN.join(tool_response_body(r.name or "unknown", r.content)
                                     for r in results)
    out = [Segment(calls + TOOL_RESPONSE_OPEN, trained=True), Segment(bodies, trained=False)]
    return out + stop if answer else out


def _strip_thinking(text: str) -> str:
    """A model turn's text without thought channels, stripped (as Gemma 4's template does)."""
    parts = text.split("<channel|>")
    return "".join(p.split("<|channel>")[0] if "<|channel>" in p else p for p in parts).strip()


def _results_after(turns: list[Turn], i: int) -> list[Turn]:
    """The tool turns that directly follow turn `i`."""
    out = []
    for turn in turns[i + 1:]:
        if turn.role != "tool":
            break
        out.append(turn)
    return out


def _merged(segments: list[Segment]) -> list[Segment]:
    """Neighbouring untrained segments as one; no untrained newline at the very end."""
    out: list[Segment] = []
    for segment in segments:
        if out and not segment.trained and not out[-1].trained:
            out[-1] = Segment(out[-1].text + segment.text, trained=False)
        else:
            out.append(segment)
    if out and not out[-1].trained and out[-1].text == "\n":
        out.pop()
    return out


def _split_system_turns(turns: list[Turn], default: str | None):
    if turns and turns[0].role == "system":
        return turns[0].content, turns[1:]
    return default, list(turns)
