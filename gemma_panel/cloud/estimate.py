"""What a Vertex AI job will cost, worked out before it is submitted.

The estimate is the planning layer's (``planning.report.make_plan``) for the recipe on every
chip the job holds (``tpu-v5e-4`` is 4 TPU v5e chips, ``tpu-v5e-16`` a 16-chip slice on
four VMs, ``h100`` with 2 replicas 2 x 8 H100s), so ``cloud submit`` and ``gemma-panel plan
--hardware tpu-v5e:16`` give the same time and cost. Of the listed
prices, the job's offer (spot or on-demand) is used, Vertex AI's own rate where the table
has one, else the Compute Engine / Cloud TPU rate (which Vertex AI's may exceed).

Example:
    >>> estimate = job_estimate(load_recipe("recipes/quickstart.yaml"), "tpu-v5e-4")
    >>> print("\\n".join(estimate.lines()))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gemma_panel.errors import UserError


class CostLimitError(UserError, ValueError):
    """An estimate above ``--max-cost``, or none to compare with it."""


@dataclass
class JobEstimate:
    """The time and the chosen cost of one job (``cost`` None: no price or no time)."""

    accelerator: str
    offer: str  # "spot" or "on_demand"
    hardware: object  # planning.hardware.Hardware
    time: object | None  # planning.time.TimeEstimate
    cost: object | None  # planning.prices.Cost
    notes: list[str] = field(default_factory=list)
    memory: object | None = None  # planning.memory.MemoryEstimate of the run's strategy
    replicas: int = 1

    def lines(self) -> list[str]:
        from gemma_panel.training.events import duration

        offer = self.offer.replace("_", "-")
        machines = f" x {self.replicas} replicas" if self.replicas > 1 else ""
        head = f"estimate for {self.accelerator}{machines} ({self.hardware.describe()})"
        out = [f"{head}, {offer}:"]
        if self.memory is not None:
            out.append(f"  memory: {self.memory_text()}")
        if self.time is not None:
            out.append(f"  time: {duration(self.time.seconds)} ({self.time.seconds:,.0f} s) "
                       f"for {self.time.steps} steps ({self.time.method})")
        if self.cost is not None:
            out.append(f"  cost: {self.cost.line()}")
        out += [f"  note: {n}" for n in self.notes]
        return out

    def memory_text(self) -> str:
        """The memory fit in words: GiB per device of how much, the strategy, the verdict."""
        m = self.memory
        of = f" of {m.capacity / 2**30:.0f} GiB" if m.capacity else ""
        return (f"{m.total / 2**30:.2f} GiB{of} per device ({m.strategy} over {m.devices}): "
                f"{m.badge.upper()}")

    def check_limit(self, max_usd: float | None) -> None:
        """Refuse (`CostLimitError`) a cost above ``max_usd``, or no cost to compare."""
        if max_usd is None:
            return
        if self.cost is None:
            raise CostLimitError(
                f"--max-cost {max_usd:g}: there is no cost estimate to compare with "
                f"({'; '.join(self.notes) or 'no estimate'}); nothing was submitted: add a "
                "price to GEMMA_PANEL_HOME/prices.yaml or drop --max-cost.")
        if self.cost.usd > max_usd:
            raise CostLimitError(
                f"the estimated cost, ${self.cost.usd:,.2f}, is above --max-cost "
                f"${max_usd:,.2f}; nothing was submitted: raise --max-cost, shorten the run "
                "(train.max_steps, train.epochs) or choose a cheaper --accelerator or --spot.")


def job_estimate(recipe, accelerator: str, spot: bool = False,
                 price_table: dict | None = None, replicas: int = 1) -> JobEstimate:
    """The planner's time and cost of ``recipe`` on the job's ``accelerator``, every chip
    of every replica counted (``replicas``: GPU machines)."""
    from gemma_panel.cloud import vertex
    from gemma_panel.planning.hardware import named_hardware
    from gemma_panel.planning.memory import model_size
    from gemma_panel.planning.report import make_plan, strategy_in_use
    from gemma_panel.planning.stats import dataset_stats_for

    vertex.check_replicas(accelerator, replicas)
    chip = vertex.hardware(accelerator)  # an unknown name: its sentence
    hardware = named_hardware(chip.profile).with_count(chip.chips * replicas)
    notes = []
    try:
        stats = dataset_stats_for(recipe)
    except UserError as exc:  # bad data, unreadable data, no tokenizer: no time, no cost
        stats = None
        notes.append(f"the data cannot be planned for: {str(exc).splitlines()[0]}")
    plan = make_plan(recipe, hardware, stats, model_size(recipe.model.source),
                     price_table=price_table)
    offer = "spot" if spot else "on_demand"
    cost = pick_cost(plan.costs, offer)
    notes += plan.notes
    if plan.time is not None and cost is None:
        notes.append(f"no {offer.replace('_', '-')} price listed for {hardware.name}; add "
                     "one to GEMMA_PANEL_HOME/prices.yaml")
    elif cost is not None and cost.table != "vertex_ai":
        notes.append("priced at the VM rate: Vertex AI bills its own rate, which may be "
                     "higher")
    if plan.time is not None and plan.time.method.endswith("not counted"):
        notes.append("Vertex AI bills from the job's start: starting the machine, pulling "
                     "the image, loading and compiling add minutes not counted here")
    memory = strategy_in_use(recipe, plan.memory) if plan.memory else None
    return JobEstimate(accelerator, offer, hardware, plan.time, cost, notes, memory, replicas)


def pick_cost(costs, offer: str):
    """The cost for ``offer``: Vertex AI's rate if listed, else the VM rate, else None."""
    mine = [c for c in costs if c.offer == offer]
    return next((c for c in mine if c.table == "vertex_ai"), mine[0] if mine else None)
