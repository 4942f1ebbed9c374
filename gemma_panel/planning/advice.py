"""A piece of advice (`Recommendation`) and what the recommendation rules read (`Context`).

recommend.py's rules take a `Context` and yield `Recommendation`s; the dashboard's plan and
``gemma-panel plan --json`` show them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gemma_panel.planning import memory
from gemma_panel.planning.hardware import Hardware
from gemma_panel.planning.stats import DatasetStats


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice: a recipe field and value (None for a note), why, and whence."""

    field: str | None
    value: Any
    reason: str
    source: str
    kind: str = "setting"  # "setting", "warning" or "note"
    current: Any = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Context:
    """What the rules read: the recipe, the data's statistics, the hardware, the model's
    size, and what earlier rules recommended (``values``, by field path)."""


    recipe: Any
    stats: DatasetStats | None
    hardware: Hardware
    model: memory.ModelSize | None
    values: dict  # what earlier rules recommended, by field path

    def get(self, path: str):
        if path in self.values:
            return self.values[path]
        section, name = path.split(".")
        return getattr(getattr(self.recipe, section), name)

    @property
    def examples(self) -> int:
        return self.stats.examples if self.stats else 0

    def total_steps(self) -> int:
        """Optimizer steps with the settings recommended so far (as the trainer counts)."""
        if not self.stats:
            return 0
        rows = self.stats.sequences(self.get("data.sequence_length"), self.get("data.pack"))
        per_step = self.get("train.batch_size") * self.get("train.gradient_accumulation")
        return self.get("train.max_steps") or max(1, math.ceil(
            self.get("train.epochs") * rows / per_step))


def setting(path, value, reason, source):
    return Recommendation(path, value, reason, source)
