"""``gemma-panel plan RECIPE``: recommendations, warnings, memory, time and cost first."""

from __future__ import annotations

import json
import sys

from gemma_panel.cli.format import duration
from gemma_panel.errors import UserError


class PlanUsageError(UserError, ValueError):
    """Options of ``plan`` that contradict each other."""


def add_plan_command(sub) -> None:
    cmd = sub.add_parser("plan", help="recommended settings and memory/time/cost estimates "
                         "for a recipe, before any run")
    cmd.add_argument("recipe", help="a recipe YAML file")
    cmd.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE")
    cmd.add_argument("--hardware", help="plan for a named device, optionally with a count "
                     "(l4, a100-40gb, a100-80gb, h100, tpu-v5e, tpu-v6e, tpu-v5p; tpu-v5e:8); "
                     "default: this machine")
    cmd.add_argument("--prices", help="a price file laid over the shipped table")
    cmd.add_argument("--calibrate", action="store_true",
                     help="time a few real training steps here and use that rate")
    cmd.add_argument("--json", action="store_true", help="print the plan as JSON")
    cmd.set_defaults(func=cmd_plan)


def cmd_plan(args) -> int:
    from gemma_panel.config import load_recipe
    from gemma_panel.data.report import DatasetError
    from gemma_panel.planning.hardware import hardware_from_report, named_hardware
    from gemma_panel.planning.memory import model_size
    from gemma_panel.planning.prices import load_prices
    from gemma_panel.planning.report import make_plan
    from gemma_panel.planning.stats import dataset_stats_for

    if args.calibrate and args.hardware:
        raise PlanUsageError("--calibrate times training steps on this machine, so it cannot "
                             f"plan for --hardware {args.hardware}; drop one of the two")
    recipe = load_recipe(args.recipe, args.overrides)
    prices = load_prices(args.prices)
    if args.hardware:
        hardware = named_hardware(args.hardware)
    else:
        from gemma_panel.distribution import describe_devices
        from gemma_panel.planning.time import measured_peak

        report = describe_devices()
        hardware = hardware_from_report(report, measured_peak()
                                        if report.backend == "cpu" else None)
    try:
        stats = dataset_stats_for(recipe)
    except DatasetError as exc:
        print(f"the data cannot be planned for: {str(exc).splitlines()[0]}", file=sys.stderr)
        stats = None
    calibration = None
    if args.calibrate:
        from gemma_panel.planning.time import calibrate

        calibration = calibrate(recipe)
    plan = make_plan(recipe, hardware, stats, model_size(recipe.model.source), calibration,
                     prices)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1, default=str))
    else:
        print("\n".join(plan_lines(plan)))
    return 0


def plan_lines(plan) -> list[str]:
    lines = [f"plan for {plan.hardware.describe()}", "", "recommended settings:"]
    for r in plan.recommendations:
        if r.kind == "setting":
            same = "" if r.current != r.value else "  (already set)"
            lines.append(f"  {r.field} = {r.value!r}{same}")
            lines.append(f"      {r.reason} [{r.source}]")
        elif r.kind == "note":
            name = f"{r.field} = {r.value!r}: " if r.field else ""
            lines.append(f"  note: {name}{r.reason}")
    if plan.warnings:
        lines += ["", "warnings:"]
        lines += [f"  ! {r.field}: {r.reason} [{r.source}]" for r in plan.warnings]
    for m in plan.memory:
        lines += ["", f"memory per device, {m.strategy} over {m.devices}: "
                  f"{m.total / 2**30:.2f} GiB of " + (f"{m.capacity / 2**30:.0f} GiB"
                                                      if m.capacity else "unknown")
                  + f": {m.badge.upper()}"]
        lines += [f"  {name:30} {_size(size):>10}" for name, size in m.parts.items()]
        lines += [f"  remedy: {r}" for r in m.remedies]
    if plan.time:
        lines += ["", (f"time: {duration(plan.time.seconds)} ({plan.time.seconds:,.0f} s) "
                       f"for {plan.time.steps} steps (estimate: {plan.time.method})")]
    lines += [f"cost: {c.line()}" for c in plan.costs]
    lines += [f"note: {n}" for n in plan.notes]
    return lines


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
