"""Gemma 4's tool-call text: calls, responses and their argument syntax.

Gemma 4 writes structured values in its own syntax, not JSON: strings between ``<|"|>``
tokens, keys unquoted in calls and responses, mappings with their keys sorted
case-insensitively, lists in brackets. A model turn that calls a tool writes
``<|tool_call>call:NAME{key:value,...}<tool_call|>``; each result follows in the same model
turn as ``<|tool_response>response:NAME{value:...}<tool_response|>``. This is the text
Gemma 4's published chat template produces for OpenAI-style ``tool_calls`` and ``tool``
messages.
"""

from __future__ import annotations

from typing import Any

QUOTE = '<|"|>'
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<|tool_call>", "<tool_call|>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<|tool_response>", "<tool_response|>"


def format_argument(value: Any, escape_keys: bool = True) -> str:
    """A value in Gemma 4's syntax (the chat template's ``format_argument``)."""
    if isinstance(value, str):
        return f"{QUOTE}{value}{QUOTE}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]).lower())
        return "{" + ",".join(
            f"{_key(k, escape_keys)}:{format_argument(v, escape_keys)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_argument(v, escape_keys) for v in value) + "]"
    return str(value)


def _key(key: Any, escape: bool) -> str:
    return f"{QUOTE}{key}{QUOTE}" if escape else str(key)


def tool_call_text(name: str, arguments: Any) -> str:
    """``<|tool_call>call:NAME{...}<tool_call|>``; string arguments are written as they are."""
    if isinstance(arguments, dict):
        items = sorted(arguments.items(), key=lambda kv: str(kv[0]).lower())
        body = ",".join(f"{k}:{format_argument(v, escape_keys=False)}" for k, v in items)
    else:
        body = "" if arguments is None else str(arguments)
    return f"{TOOL_CALL_OPEN}call:{name}{{{body}}}{TOOL_CALL_CLOSE}"


def tool_response_body(name: str, response: Any) -> str:
    """A tool's result without its opening token: ``response:NAME{...}<tool_response|>``."""
    if isinstance(response, dict):
        items = sorted(response.items(), key=lambda kv: str(kv[0]).lower())
        body = ",".join(f"{k}:{format_argument(v, escape_keys=False)}" for k, v in items)
    else:
        body = f"value:{format_argument(response, escape_keys=False)}"
    return f"response:{name}{{{body}}}{TOOL_RESPONSE_CLOSE}"
