"""A chat as the model sees it: the conversation so far, in the run's chat format.

The run's own chat format (the one its data was rendered in: ``template_options``) writes the
turns, with an empty model turn at the end left open for the answer. Gemma 1-3 and 3n have
no system role: a system prompt goes at the start of the first user message, as their own
chat template (and training here) does. Gemma 4 has a real system turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemma_panel.data.example import Example
from gemma_panel.data.messages import Turn
from gemma_panel.data.templates import (
    GEMMA4_TURNS,
    render_text,
    template_for_task,
    turns_for_family,
)

NO_SYSTEM_ROLE = ("Gemma 1-3 have no system role: the system prompt is put at the start of "
                  "your first message, as their own chat template does.")
SYSTEM_ROLE = "Gemma 4 has a system role: the system prompt is its own turn."


@dataclass(frozen=True)
class ChatFormat:
    """How one model family writes a conversation.

    Args:
        options: ``resolve_template``'s options for the model (``family``, ``empty_thought``,
            ``thinking``), as the run's data preparation used them.
    """

    options: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str | None:
        return self.options.get("family")

    @property
    def system_role(self) -> bool:
        """Whether the family has a system turn (Gemma 4) or folds it into the first message."""
        return turns_for_family(self.family) is GEMMA4_TURNS

    @property
    def note(self) -> str:
        return SYSTEM_ROLE if self.system_role else NO_SYSTEM_ROLE

    def prompt(self, turns: Sequence[tuple[str, str]], system: str | None = None) -> str:
        """The text before the model's next answer: ``turns`` are (role, text) pairs, user
        and model alternating, the last one the user's.

        Example:
            >>> ChatFormat().prompt([("user", "Hi")])
            '<start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\n'
        """
        if not turns or turns[-1][0] != "user":
            raise ValueError("a chat prompt ends with the user's message")
        template = template_for_task(None, system_prompt=(system or "").strip() or None,
                                     **self.options)
        messages = [Turn(role, text) for role, text in turns] + [Turn("model", "")]
        segments = template.segments(Example(messages=messages))
        answer = max(i for i, s in enumerate(segments) if s.trained)  # the open model turn
        return render_text(segments[:answer])


def recipe_chat_format(recipe) -> ChatFormat:
    """The chat format a run's data was rendered in (its model's family, its thinking)."""
    from gemma_panel.data.preflight import template_options

    return ChatFormat(template_options(recipe))


def run_chat_format(run_dir: str | Path) -> ChatFormat:
    """``recipe_chat_format`` of a run folder's recipe (nothing is loaded)."""
    from gemma_panel.config import load_recipe

    return recipe_chat_format(load_recipe(Path(run_dir) / "recipe.yaml"))
