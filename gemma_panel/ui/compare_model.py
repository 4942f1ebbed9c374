"""The Compare tab's state: a set of runs on one axis, their table, settings and samples.

All of it comes from ``gemma_panel.runs.compare_runs``; this model only keeps the choice
(which runs, step or tokens) and turns the result into rows a table shows.

Example:
    >>> cmp = CompareModel(RunStore())
    >>> cmp.chosen = ["lr-high-1a2b3c", "lr-low-4d5e6f"]
    >>> cmp.fields      # [{"field": "train.learning_rate", "lr-high-1a2b3c": 0.0003, ...}]
"""

from __future__ import annotations

from typing import Any

import param

from gemma_panel.runs import RunNotFound, RunStore, compare_runs

from .outputs import writing

METRICS = ("loss", "val_loss", "val_perplexity", "learning_rate", "tokens_per_s",
           "val_token_accuracy", "accuracy", "macro_f1", "exact_match")


class CompareModel(param.Parameterized):
    """Runs to compare and what comparing them shows."""

    chosen = param.ListSelector(default=[], objects=[], doc="Run ids, in the order picked.")
    x = param.Selector(default="step", objects=["step", "tokens"])
    # What comparing shows: read-only outside the model (see outputs.py).
    curves = param.Dict(default={}, constant=True, doc="metric -> run id -> (xs, ys).")
    table = param.List(default=[], constant=True,
                       doc="One row per run: status, final and best metrics.")
    fields = param.List(default=[], constant=True, doc="One row per recipe field that differs.")
    samples = param.List(default=[], constant=True,
                         doc="One row per prompt: base, then each run's answer.")
    message = param.String(default="Pick two or more runs.", constant=True)

    def __init__(self, store: RunStore | None = None, **params):
        super().__init__(**params)
        self.store = store or RunStore()
        self.refresh_choices()
        self.compute()

    def refresh_choices(self) -> None:
        """Offer every run in the store (newest first); keep the current choice."""
        ids = [r.id for r in self.store.list_runs()]
        self.param.chosen.objects = ids
        kept = [r for r in self.chosen if r in ids]
        if kept != self.chosen:
            self.chosen = kept

    @param.depends("chosen", "x", watch=True)
    def compute(self) -> None:
        if not self.chosen:
            with writing(self):
                self.curves, self.table, self.fields, self.samples = {}, [], [], []
                self.message = "Pick two or more runs."
            return
        try:
            cmp = compare_runs(self.store, list(self.chosen), x=self.x)
        except RunNotFound as exc:
            with writing(self):
                self.message = str(exc)
            return
        ids = [r.id for r in cmp.runs]
        with writing(self):
            self.curves = {m: cmp.curves[m] for m in METRICS if m in cmp.curves}
            self.table = [{k: _cell(v) for k, v in row.items()} for row in cmp.table]
            self.fields = [{"field": name, **{rid: _cell(values.get(rid)) for rid in ids}}
                           for name, values in cmp.recipe_fields.items()]
            self.samples = [{"prompt": s["prompt"], "reference": s.get("reference"),
                             "base": s.get("base"),
                             **{rid: s["tuned"].get(rid) for rid in ids}}
                            for s in cmp.samples]
            same = "identical settings" if not cmp.recipe_fields else \
                f"{len(cmp.recipe_fields)} setting(s) differ"
            self.message = f"{len(ids)} run(s) by {self.x}; {same}."


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, (list, dict)):
        return str(value)
    return value
