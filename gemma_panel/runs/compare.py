"""Comparing runs: curves on a shared axis, a metrics table, the recipe fields that differ,
and the latest sample generations side by side. The dashboard's Compare view, notebooks and
``gemma-panel runs compare`` all use ``compare_runs``.

Example:
    >>> cmp = compare_runs(RunStore(), ["lr-high-1a2b3c", "lr-low-4d5e6f"], x="tokens")
    >>> xs, ys = cmp.curves["loss"]["lr-high-1a2b3c"]
    >>> cmp.recipe_fields
    {'train.learning_rate': {'lr-high-1a2b3c': 0.0003, 'lr-low-4d5e6f': 0.0001}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from gemma_panel.config import Recipe, recipe_diff

from .records import MetricPoint, Run
from .store import RunStore

# For "best" values: these improve downwards; every other metric improves upwards.
LOWER_IS_BETTER = ("loss", "perplexity", "step_time_s", "eta_s")


def lower_is_better(name: str) -> bool:
    return any(name.endswith(suffix) for suffix in LOWER_IS_BETTER)


def current_points(points: list[MetricPoint]) -> list[MetricPoint]:
    """Drop points a resume replaced: once attempt N starts at step s, earlier attempts'
    points from step s on are history the resumed run re-did."""
    first_step: dict[int, int] = {}
    for p in points:
        first_step[p.attempt] = min(first_step.get(p.attempt, p.step), p.step)

    def cutoff(attempt: int) -> float:
        later = [s for a, s in first_step.items() if a > attempt]
        return min(later) if later else float("inf")

    cuts = {a: cutoff(a) for a in first_step}
    return [p for p in points if p.step < cuts[p.attempt]]


def curves(store: RunStore, run_id: str, x: str = "step",
           names: list[str] | None = None) -> dict[str, tuple[list[float], list[float]]]:
    """``{metric: (xs, ys)}`` for one run, x being the optimizer step or the tokens seen."""
    if x not in ("step", "tokens"):
        raise ValueError("x: 'step' or 'tokens'")
    out: dict[str, tuple[list, list]] = {}
    points = sorted(current_points(store.metrics(run_id, names=names)),
                    key=lambda p: (p.step, p.seq))
    for p in points:
        if p.value is None:
            continue
        xs, ys = out.setdefault(p.name, ([], []))
        xs.append(p.step if x == "step" else p.tokens)
        ys.append(p.value)
    return out


@dataclass
class Comparison:
    """What ``compare_runs`` returns.

    Attributes:
        runs: the runs, in the order asked for.
        x: "step" or "tokens", the shared axis of ``curves``.
        curves: ``{metric: {run_id: (xs, ys)}}``.
        table: one dict per run: run, name, status, step, tokens, duration_s, and
            ``final <metric>`` / ``best <metric>`` for each metric any run has.
        recipe_fields: ``{"section.field": {run_id: value}}`` for fields that differ.
        samples: per prompt, ``{"prompt", "reference", "base", "tuned": {run_id: text},
            "step": {run_id: step}}``, from each run's latest evaluation.
    """

    runs: list[Run]
    x: str
    curves: dict[str, dict[str, tuple[list, list]]] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    recipe_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_text(self, metrics: tuple[str, ...] = ("loss", "val_loss")) -> str:
        """A plain-text report: table, differing settings, samples."""
        lines = []
        columns = ["run", "status", "step", "tokens"] + [
            c for m in metrics for c in (f"final {m}", f"best {m}")
            if any(c in row for row in self.table)]
        widths = [max(len(c), *(len(_cell(r.get(c))) for r in self.table)) for c in columns]
        lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
        for row in self.table:
            lines.append("  ".join(_cell(row.get(c)).ljust(w) for c, w in zip(columns, widths)))
        lines.append("")
        if self.recipe_fields:
            lines.append("settings that differ:")
            for name, values in self.recipe_fields.items():
                shown = ", ".join(f"{run}={_cell(v)}" for run, v in values.items())
                lines.append(f"  {name}: {shown}")
        else:
            lines.append("settings: identical")
        for s in self.samples:
            lines.append("")
            lines.append(f"prompt: {s['prompt']!r}")
            if s.get("reference"):
                lines.append(f"  reference: {s['reference']!r}")
            if s.get("base") is not None:
                lines.append(f"  base: {s['base']!r}")
            for run, text in s["tuned"].items():
                lines.append(f"  {run} (step {s['step'][run]}): {text!r}")
        return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _recipe(run: Run) -> Recipe:
    return Recipe.from_dict(yaml.safe_load(run.recipe_yaml))


def compare_runs(store: RunStore, run_ids: list[str], x: str = "step",
                 metrics: list[str] | None = None) -> Comparison:
    """Compare any set of runs (ids or unique prefixes); see ``Comparison``."""
    runs = [store.get(r) for r in run_ids]
    cmp = Comparison(runs=runs, x=x)
    for run in runs:
        row: dict[str, Any] = {"run": run.id, "name": run.name, "status": run.status,
                               "step": run.step, "tokens": run.tokens,
                               "duration_s": run.duration_s}
        for name, (xs, ys) in curves(store, run.id, x=x, names=metrics).items():
            cmp.curves.setdefault(name, {})[run.id] = (xs, ys)
            row[f"final {name}"] = ys[-1]
            row[f"best {name}"] = min(ys) if lower_is_better(name) else max(ys)
        cmp.table.append(row)

    recipes = {run.id: _recipe(run) for run in runs}
    first = recipes[runs[0].id] if runs else None
    differing: list[str] = []
    for recipe in recipes.values():
        differing += [k for k in recipe_diff(first, recipe) if k not in differing]
    if len({r.name for r in recipes.values()}) > 1:
        cmp.recipe_fields["name"] = {rid: r.name for rid, r in recipes.items()}
    for key in differing:
        section, name = key.split(".", 1)
        cmp.recipe_fields[key] = {rid: getattr(getattr(r, section), name)
                                  for rid, r in recipes.items()}

    by_prompt: dict[str, dict[str, Any]] = {}
    for run in runs:
        rows = store.samples(run.id)
        if not rows:
            continue
        last = max(rows, key=lambda s: (s.attempt, s.step))
        for s in rows:
            if (s.attempt, s.step) != (last.attempt, last.step):
                continue
            entry = by_prompt.setdefault(s.prompt, {"prompt": s.prompt, "reference": s.reference,
                                                    "base": s.base, "tuned": {}, "step": {}})
            entry["tuned"][run.id] = s.tuned
            entry["step"][run.id] = s.step
    cmp.samples = list(by_prompt.values())
    return cmp
