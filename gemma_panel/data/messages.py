"""Chat conversations: OpenAI (role/content) and ShareGPT (from/value) turn lists."""

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
        if isinstance(content, list):  # OpenAI content parts
            texts = [p.get("text", "") for p in content if isinstance(p, dict)
                     and p.get("type") == "text"]
            if len(texts) != len(content):
                problems.append(f"message {i} has non-text parts (images?); only text "
                                "is supported")
            content = "".join(texts)
        if not isinstance(content, str):
            problems.append(f"message {i} content is {type(content).__name__}, not text")
            continue
        if not content.strip():
            problems.append(f"message {i} ({role}) is empty")
        turns.append(Turn(role, content))
    problems.extend(_order_problems(turns))
    return turns, problems


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
