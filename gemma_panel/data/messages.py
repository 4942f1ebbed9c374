"""Chat conversations: OpenAI (role/content) and ShareGPT (from/value) turn lists.

Content may be a string or a list of typed parts (OpenAI's multi-part form,
``[{"type": "text", "text": ...}]``, or ``"value"`` in place of ``"text"``); text parts are
joined, as Gemma's own chat template does, and an image part becomes Gemma 3's image token
``<start_of_image>`` at its place (data/images.py reads and checks the image itself). Tool-calling conversations are recognised and
refused for what they are (Gemma 1-3's chat format has no tool turns), unless the caller
asks for them (``tools=True``, for Gemma 4): OpenAI ``tool_calls`` and ``tool`` messages
then become model turns with `ToolCall`s and ``tool`` turns.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any, Literal

from gemma_panel.data.images import IMAGE_PART_TYPES, IMAGE_TOKEN

Role = Literal["system", "user", "model", "tool"]

_ROLES: dict[str, Role] = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "model", "model": "model", "gpt": "model", "bot": "model",
    "chatgpt": "model",
}

# Tool calling: ShareGPT's function_call/observation turns, OpenAI's tool (once function) role.
TOOL_ROLES = frozenset({"function_call", "observation", "tool", "function", "tool_call",
                        "tool_response", "ipython"})
_CALL_ROLES = frozenset({"function_call", "tool_call"})
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


@dataclass(frozen=True)
class ToolCall:
    """A function call a model turn makes: its name and arguments (a mapping, or raw text)."""

    name: str
    arguments: Any = None


@dataclass(frozen=True)
class Turn:
    """One chat turn in Gemma's terms (user, model, system; ``tool`` for a tool's result).

    Args:
        tool_calls: the calls a model turn makes (Gemma 4 tool use).
        name: for a ``tool`` turn, the function whose result it is.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    name: str | None = None


def normalize_messages(value: Any, *, tools: bool = False) -> tuple[list[Turn], list[str]]:
    """Turns from an OpenAI or ShareGPT message list, and what is wrong with it in words.

    A system message is kept as a turn; the template decides where it goes (Gemma 1-3 fold
    it into the first user turn, as their own chat template does). An empty problem list
    means the conversation can be trained on: it alternates user/model, starting with user,
    ending with model. With `tools`, a model turn's ``tool_calls`` and the ``tool`` results
    that follow it are read instead of refused.
    """
    if not isinstance(value, list):
        return [], [f"expected a list of messages, found {type(value).__name__}"]
    if not value:
        return [], ["the message list is empty"]
    found = tool_roles(value)
    if found and not tools:
        return [], [tool_data_problem(found)]
    turns: list[Turn] = []
    problems: list[str] = []
    call_names: dict[Any, str] = {}
    for i, msg in enumerate(value, 1):
        turn, problem = _turn(msg, i, call_names)
        if problem:
            problems.append(problem)
        if turn is not None:
            turns.append(turn)
    problems.extend(_order_problems(turns))
    return turns, problems


def _turn(msg: Any, i: int, call_names: dict) -> tuple[Turn | None, str | None]:
    """One message as a turn (None when it cannot count at all) and what is wrong with it."""
    if not isinstance(msg, dict):
        return None, f"message {i} is {type(msg).__name__}, not an object"
    if "role" in msg or "content" in msg:
        raw_role, content = msg.get("role"), msg.get("content")  # OpenAI
    elif "from" in msg or "value" in msg:
        raw_role, content = msg.get("from"), msg.get("value")  # ShareGPT
    else:
        return None, (f"message {i} has neither role/content nor from/value keys "
                      f"(keys: {', '.join(map(str, msg)) or 'none'})")
    lowered = str(raw_role).strip().lower()
    if lowered in _CALL_ROLES:  # ShareGPT: the call as JSON text {"name", "arguments"}
        return _sharegpt_call(content, i, call_names)
    if lowered in TOOL_ROLES:
        return _tool_result(msg, content, i, call_names)
    role = _ROLES.get(lowered)
    if role is None:
        return None, (f"message {i} has role {raw_role!r}; known roles are system, "
                      "user/human, assistant/gpt/model")
    calls = _tool_calls(msg, call_names) if role == "model" else ()
    if content is None and calls:
        content = ""
    if isinstance(content, list):
        content, problem = _join_parts(content, i)
        if problem:
            return Turn(role, ""), problem  # its role still counts for the turn order
    if not isinstance(content, str):
        return None, f"message {i} content is {type(content).__name__}, not text"
    problem = f"message {i} ({role}) is empty" if not content.strip() and not calls else None
    return Turn(role, content, tool_calls=calls), problem


def _tool_calls(msg: dict, call_names: dict) -> tuple[ToolCall, ...]:
    """An OpenAI assistant message's ``tool_calls``; JSON-text arguments become mappings."""
    calls = []
    for call in msg.get("tool_calls") or ():
        function = call.get("function", call) if isinstance(call, dict) else {}
        name, arguments = str(function.get("name", "")), function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        call_names[call.get("id") if isinstance(call, dict) else None] = name
        calls.append(ToolCall(name, arguments))
    return tuple(calls)


def _sharegpt_call(content: Any, i: int, call_names: dict):
    try:
        call = json.loads(content) if isinstance(content, str) else content
        if not isinstance(call, dict) or "name" not in call:
            raise ValueError
    except ValueError:
        return None, (f"message {i} (function_call) is not JSON with a name and arguments: "
                      f"{str(content)[:60]!r}")
    return Turn("model", "", tool_calls=_tool_calls({"tool_calls": [call]}, call_names)), None


def _tool_result(msg: dict, content: Any, i: int, call_names: dict):
    """A ``tool`` message: its text and the name of the function it answers."""
    name = msg.get("name") or call_names.get(msg.get("tool_call_id"))
    if name is None and len(call_names) == 1:
        name = next(iter(call_names.values()))
    if isinstance(content, (dict, list)):
        content = json.dumps(content, ensure_ascii=False)
    if not isinstance(content, str):
        return None, f"message {i} (tool) content is {type(content).__name__}, not text"
    return Turn("tool", content, name=name or "unknown"), None


def tool_roles(value: Any) -> list[str]:
    """The tool-calling roles in a message list, as written (empty for plain chat).

    An OpenAI assistant message that carries ``tool_calls`` counts as ``"tool_calls"``.
    """
    found: list[str] = []
    for msg in value if isinstance(value, list) else ():
        if not isinstance(msg, dict):
            continue
        role = msg.get("role", msg.get("from"))
        names = [str(role)] if str(role).strip().lower() in TOOL_ROLES else []
        names += [key for key in ("tool_calls", "function_call") if msg.get(key)]
        found += [n for n in names if n not in found]
    return found


def tool_data_problem(roles: list[str]) -> str:
    """What to say about a tool-calling conversation, and what to do with it."""
    named = ", ".join(repr(r) for r in roles)
    return (f"tool-calling conversation (turns or fields {named}): gemma_panel trains plain "
            "user/model chat, and Gemma's chat format has no tool turns; remove the tool "
            "turns (or these rows), or wait for tool-use tuning")


def _join_parts(parts: list, i: int) -> tuple[str | None, str | None]:
    """The text of a multi-part content list, or None and what is wrong with it."""
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            return None, f"message {i} has a content part that is {type(part).__name__}"
        kind = part.get("type", "text")
        if kind in IMAGE_PART_TYPES:  # its file is checked by data/images.py
            texts.append(IMAGE_TOKEN)
            continue
        if kind not in _TEXT_PARTS:
            return None, (f"message {i} has non-text parts (type {kind!r}): text and images "
                          "are read, audio and other media are not supported yet; remove "
                          "those parts or the row")
        text = part.get("text", part.get("value"))
        if isinstance(text, dict):  # OpenAI Assistants: {"value": ..., "annotations": ...}
            text = text.get("value")
        if not isinstance(text, str):
            return None, (f"message {i} has a text part without text (keys: "
                          f"{', '.join(map(str, part))})")
        texts.append(text)
    return "".join(texts), None


def _order_problems(turns: list[Turn]) -> list[str]:
    out = []
    systems = [i for i, t in enumerate(turns) if t.role == "system"]
    if systems and systems != [0]:
        out.append("a system message may only come first, once")
    chat = _without_tool_results(turns, out)
    if not chat:
        return out + ["no user or model turns"]
    if chat[0].role != "user":
        out.append("the conversation must start with a user turn")
    for a, b in itertools.pairwise(chat):
        if a.role == b.role:
            out.append(f"two {a.role} turns in a row; turns must alternate user/model")
            break
    if chat[-1].role != "model":
        out.append("the conversation ends with a user turn: nothing to train on after it")
    return out


def _without_tool_results(turns: list[Turn], out: list[str]) -> list[Turn]:
    """The user/model turns, a tool exchange counted as one model turn.

    A ``tool`` turn must answer a model turn's calls; the model turn after it continues
    the same model turn, so it does not break the user/model alternation.
    """
    chat: list[Turn] = []
    for i, turn in enumerate(turns):
        if turn.role == "system":
            continue
        previous = turns[i - 1] if i else None
        if turn.role == "tool":
            if previous is None or not (previous.tool_calls or previous.role == "tool"):
                out.append(f"a tool result (message {i + 1}) must follow a model turn that "
                           "calls a tool")
            continue
        if turn.role == "model" and previous is not None and previous.role == "tool":
            continue
        chat.append(turn)
    return chat
