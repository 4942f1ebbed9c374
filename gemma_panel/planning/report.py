"""One plan for a recipe: recommendations, warnings, memory per strategy, time and cost.

``make_plan`` is what ``gemma-panel plan`` prints and what the dashboard's Configure tab
shows; its ``to_dict()`` is the ``--json`` output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gemma_panel.planning import memory
from gemma_panel.planning.hardware import Hardware
from gemma_panel.planning.prices import Cost, costs
from gemma_panel.planning.recommend import Recommendation, recommend
from gemma_panel.planning.stats import DatasetStats
from gemma_panel.planning.time import Calibration, TimeEstimate, estimate_time


@dataclass
class Plan:
    hardware: Hardware
    recommendations: list[Recommendation]
    memory: list[memory.MemoryEstimate]
    time: TimeEstimate | None = None
    costs: list[Cost] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[Recommendation]:
        return [r for r in self.recommendations if r.kind == "warning"]

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware.describe(),
            "recommendations": [r.to_dict() for r in self.recommendations
                                if r.kind != "warning"],
            "warnings": [r.to_dict() for r in self.warnings],
            "memory": [m.to_dict() for m in self.memory],
            "time": self.time.to_dict() if self.time else None,
            "costs": [{"offer": c.offer, "table": c.table, "usd": c.usd,
                       "usd_per_device_hour": c.usd_per_device_hour, "date": c.date,
                       "source": c.source, "estimate": True} for c in self.costs],
            "notes": self.notes,
        }


def apply_recommendations(recipe, recommendations, fields=None):
    """The recipe with the recommended values set ("apply all", or only ``fields``),
    checked as ``recipe_from_values`` checks; warnings and notes are not applied.

    Raises:
        RecipeError: a combination the recipe's validation refuses.
    """
    from gemma_panel.config import replace_settings, validate

    values = {r.field: r.value for r in recommendations
              if r.kind == "setting" and (fields is None or r.field in fields)}
    changed = replace_settings(recipe, values)
    validate(changed)
    return changed


def total_steps(recipe, stats: DatasetStats) -> int:
    """Optimizer steps of the run, counted as the trainer counts them."""
    t, d = recipe.train, recipe.data
    rows = stats.sequences(d.sequence_length, d.pack, d.seed)
    return t.max_steps or max(1, math.ceil(t.epochs * rows / (t.batch_size *
                                                               t.gradient_accumulation)))


def memory_estimates(recipe, hardware: Hardware, stats: DatasetStats | None,
                     model: memory.ModelSize) -> list[memory.MemoryEstimate]:
    """Memory per device under each strategy the devices allow, with the remedies."""
    d = recipe.data
    share = stats.answer_share(d.sequence_length, d.pack) if stats else 0.5
    run = memory.training_shape(recipe, share)
    share_cut = stats.cut_share if stats else None
    out = []
    for strategy in memory.strategies_for(hardware.count):
        estimate = memory.estimate_memory(model, run, hardware.backend,
                                          hardware.memory_per_device, strategy, hardware.count)
        out.append(memory.with_remedies(model, run, estimate, hardware.backend, share_cut))
    return out


def strategy_in_use(recipe, estimates: list[memory.MemoryEstimate]) -> memory.MemoryEstimate:
    """The estimate of the strategy the run would use: the recipe's, or for ``auto``
    data_parallel when it fits each device, else fsdp (the run's rule)."""
    by_name = {e.strategy: e for e in estimates}
    chosen = recipe.distribution.strategy
    if chosen in by_name:
        return by_name[chosen]
    if "single" in by_name:
        return by_name["single"]
    parallel = by_name["data_parallel"]
    return parallel if parallel.badge in ("fits", "unknown") else by_name["fsdp"]


def make_plan(recipe, hardware: Hardware, stats: DatasetStats | None,
              model: memory.ModelSize | None, calibration: Calibration | None = None,
              price_table: dict | None = None) -> Plan:
    """The whole plan; a ``calibration`` (timed here) replaces the FLOP-based time."""
    plan = Plan(hardware, recommend(recipe, stats, hardware, model), [])
    if model is None:
        plan.notes.append("model size unknown: no memory or time estimate")
        return plan
    d = recipe.data
    plan.memory = memory_estimates(recipe, hardware, stats, model)
    if stats is None or not stats.examples:
        plan.notes.append("no token statistics: no time or cost estimate")
        return plan
    steps = total_steps(recipe, stats)
    validation = round(stats.examples * d.validation_fraction / (1 - d.validation_fraction))
    if recipe.eval.max_examples is not None:
        validation = min(validation, recipe.eval.max_examples)
    plan.time = estimate_time(recipe, model, stats, hardware, steps,
                              calibration=calibration, validation_examples=validation)
    plan.costs = costs(hardware.price_key, hardware.count, plan.time.seconds, price_table)
    if hardware.price_key and not plan.costs:
        plan.notes.append(f"no price listed for {hardware.name}; add one to "
                          "GEMMA_PANEL_HOME/prices.yaml")
    return plan
