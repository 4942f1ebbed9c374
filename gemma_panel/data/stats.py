"""Token-length statistics: how long examples are, how many get cut, tokens per epoch."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gemma_panel.data.tokenized import TokenizedExample, tokens_per_sequence


@dataclass
class TokenStatistics:
    """Collects lengths one example at a time (a million rows cost 12 MB), then summarises.

    Example:

    ```python
    stats = TokenStatistics(sequence_length=512)
    for ex in tokenized_examples:
        stats.add(ex)
    stats.summary()["truncated_share"]
    ```
    """

    sequence_length: int | None = None
    bins: int = 20
    prompt: array = field(default_factory=lambda: array("I"))
    target: array = field(default_factory=lambda: array("I"))

    def add(self, tokenized: TokenizedExample) -> None:
        self.add_lengths(tokenized.prompt_tokens, tokenized.target_tokens)

    def add_lengths(self, prompt_tokens: int, target_tokens: int) -> None:
        self.prompt.append(prompt_tokens)
        self.target.append(target_tokens)

    def __len__(self) -> int:
        return len(self.prompt)

    def summary(self) -> dict[str, Any]:
        """Plain numbers: per-part distributions and histograms, truncation, token totals."""
        prompt = np.frombuffer(self.prompt, dtype=np.uint32).astype(np.int64)
        target = np.frombuffer(self.target, dtype=np.uint32).astype(np.int64)
        total = prompt + target
        seq = self.sequence_length
        held = None if seq is None else tokens_per_sequence(seq)
        if held is not None and len(total):
            kept = np.minimum(total, held)
            trained = np.clip(held - prompt, 0, None)
            trained = np.minimum(trained, target)
            truncated = float(np.mean(total > held))
        else:
            kept, trained, truncated = total, target, 0.0
        return {
            "examples": len(total),
            "sequence_length": seq,
            "prompt": _describe(prompt, self.bins),
            "response": _describe(target, self.bins),
            "total": _describe(total, self.bins),
            "truncated_share": truncated,
            "truncated_examples": int(np.sum(total > held)) if held and len(total) else 0,
            "tokens_per_epoch": int(kept.sum()),
            "trained_tokens_per_epoch": int(trained.sum()),
        }


def _describe(values: np.ndarray, bins: int) -> dict[str, Any]:
    if not len(values):
        return {"mean": 0.0, "min": 0, "max": 0, "p50": 0, "p95": 0, "p99": 0,
                "histogram": {"counts": [], "edges": []}}
    counts, edges = np.histogram(values, bins=min(bins, max(1, int(np.ptp(values)) + 1)))
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "mean": float(values.mean()), "min": int(values.min()), "max": int(values.max()),
        "p50": float(p50), "p95": float(p95), "p99": float(p99),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }
