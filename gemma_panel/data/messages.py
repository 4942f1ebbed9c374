"""Chat conversations: OpenAI (role/content) and ShareGPT (from/value) turn lists.

Content may be a string or a list of typed parts (OpenAI's multi-part form,
``[{"type": "text", "text": ...}]``, or ``"value"`` in place of ``"text"``); text parts are
joined, as Gemma's own chat template does. Tool-calling conversations are recognised and
refused for what they are: Gemma's chat format has no tool turns.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["system", "user", "model"]

_ROLES: dict[str, Role] = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "model", "model": "model", "gpt": "model", "bot": "model",
    "chatgpt": "model",
}

# Tool calling: ShareGPT's function_call/observation turns, OpenAI's tool (once function) role.
TOOL_ROLES = frozenset({"function_call", "observation", "tool", "function", "tool_call",
                        "tool_response", "ipython"})
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


@dataclass(frozen=True)
class Turn:
    """One chat turn in Gemma's terms: Gemma has user and model roles only."""

    role: Role
    content: str


def normalize_messages(value: Any) -> tuple[list[Turn], list[str]]:
    """Turns from an OpenAI or ShareGPT message list, and what is wrong with it in words.

    A system message is kept as a turn; the template folds it into the first user turn,
    as Gemma's own chat template does. An empty problem list means the conversation
    can be trained on: it alternates user/model, starting with user, ending with model.
    """
    if not isinstance(value, list):
        return [], [f"expected a list of messages, found {type(value).__name__}"]
    if not value:
        return [], ["the message list is empty"]
    tools = tool_roles(value)
    if tools:
        return [], [tool_data_problem(tools)]
    turns: list[Turn] = []
    problems: list[str] = []
    for i, msg in enumerate(value, 1):
        if not isinstance(msg, dict):
            problems.append(f"message {i} is {type(msg).__name__}, not an object")
            continue
        if "role" in msg or "content" in msg:
            raw_role, content = msg.get("role"), msg.get("content")  # OpenAI
        elif "from" in msg or "value" in msg:
            raw_role, content = msg.get("from"), msg.get("value")  # ShareGPT
        else:
            problems.append(f"message {i} has neither role/content nor from/value keys "
                            f"(keys: {', '.join(map(str, msg)) or 'none'})")
            continue
        role = _ROLES.get(str(raw_role).strip().lower())
        if role is None:
            problems.append(f"message {i} has role {raw_role!r}; known roles are system, "
                            "user/human, assistant/gpt/model")
            continue
        if isinstance(content, list):
            content, problem = _join_parts(content, i)
            if problem:
                problems.append(problem)
                turns.append(Turn(role, ""))  # its role still counts for the turn order
                continue
        if not isinstance(content, str):
            problems.append(f"message {i} content is {type(content).__name__}, not text")
            continue
        if not content.strip():
            problems.append(f"message {i} ({role}) is empty")
        turns.append(Turn(role, content))
    problems.extend(_order_problems(turns))
    return turns, problems


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
        if kind not in _TEXT_PARTS:
            return None, (f"message {i} has non-text parts (type {kind!r}): only text is "
                          "read, images and other media are not supported yet; remove those "
                          "parts or the row")
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
    chat = [t for t in turns if t.role != "system"]
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
