"""The Configure tab's plan: the memory fit badge, "apply all", and each field's recommendation.

Everything here follows a ``PlanModel`` (plan_model.py) through bindings; the buttons call
its ``apply``, ``apply_all`` and ``measure``.
"""

from __future__ import annotations

import html

import panel as pn

from .plan_model import PlanModel

BADGE_ALERTS = {"fits": "success", "tight": "warning", "does not fit": "danger",
                "unknown": "secondary"}


def css_name(path: str) -> str:
    """A field path as a css class name (``train.epochs`` -> ``train-epochs``)."""
    return path.replace(".", "-")


def _shown(value) -> str:
    return "none" if value is None else ", ".join(value) if isinstance(value, list) \
        else f"{value:g}" if isinstance(value, float) else str(value)


def fit_text(fit: dict) -> str:
    """The badge's words: the verdict, the GiB per device of how much, and the remedies."""
    if not fit:
        return "Memory: no estimate yet."
    of = f" of {fit['capacity_gib']:.1f} GiB" if fit["capacity_gib"] else ""
    lines = [(f"**Memory: {fit['badge'].upper()}**: about {fit['total_gib']:.1f} GiB{of} per "
              f"device ({fit['strategy']} over {fit['devices']}; {fit['hardware']}).")]
    if fit["remedies"]:
        lines.append("What would make it fit, cheapest in quality first:")
        lines += [f"{i}. {r}" for i, r in enumerate(fit["remedies"], 1)]
    return "\n".join(lines)


def plan_pane(plan: PlanModel) -> pn.Column:
    """The badge, what the plan lacks, its notes and warnings, and the plan's buttons."""
    apply_all = pn.widgets.Button(label="Apply all recommendations", color="primary",
                                  css_classes=["gp-plan-apply-all"])
    apply_all.on_click(lambda _: plan.apply_all())
    measure = pn.widgets.Button(label="Measure the data", css_classes=["gp-plan-measure"])
    measure.on_click(lambda _: plan.measure())

    def badge(fit):
        kind = BADGE_ALERTS.get(fit.get("badge"), "light")
        return pn.pane.Alert(fit_text(fit), alert_type=kind, css_classes=["gp-plan-fit"])

    def advice(recommendations, status, _settings):
        pending = plan.pending()
        apply_all.disabled = not pending
        apply_all.label = f"Apply all recommendations ({len(pending)})"
        lines = [status] if status else []
        lines += [f"- **{r.field}**: {r.reason}" for r in recommendations
                  if r.kind == "warning"]
        lines += [f"- note: {r.reason}" for r in recommendations if r.kind == "note"]
        return pn.pane.Markdown("\n".join(lines) or "Every recommended value is set.",
                                css_classes=["gp-plan-status"], sizing_mode="stretch_width")
    return pn.Column(pn.bind(badge, plan.param.fit),
                     pn.bind(advice, plan.param.recommendations, plan.param.status,
                             plan.config.param.settings),
                     pn.Row(apply_all, measure), sizing_mode="stretch_width")


def advice_html(rec, value) -> str:
    """One field's recommendation, why and whence, in a line of HTML ('' for none)."""
    if rec is None:
        return ""
    said = "set as recommended" if value == rec.value else "recommended"
    return (f'<div class="gp-rec"><b>{said}: {html.escape(_shown(rec.value))}</b> — '
            f"{html.escape(rec.reason)} <small>[{html.escape(rec.source)}]</small></div>")


def recommendation_pane(plan: PlanModel, path: str) -> pn.Row:
    """Under one field: its recommended value, why, and an "apply" button (hidden while the
    field has no recommendation, or already holds it). The same two models are updated in
    place, and only where the words change: ~50 fields follow every edit."""
    def rec_of(_recommendations):
        return plan.recommendation(path)

    rec = pn.bind(rec_of, plan.param.recommendations)
    value = pn.bind(lambda settings: settings.get(path), plan.config.param.settings)
    button = pn.widgets.Button(label="apply", width=70, css_classes=[f"gp-apply-{css_name(path)}"],
                               visible=pn.bind(lambda r, v: r is not None and v != r.value,
                                               rec, value))
    button.on_click(lambda _: plan.apply(path))
    text = pn.pane.HTML(pn.bind(advice_html, rec, value), css_classes=[f"gp-rec-{css_name(path)}"],
                        visible=pn.bind(lambda r: r is not None, rec),
                        sizing_mode="stretch_width", styles={"font-size": "0.85em"})
    return pn.Row(text, button, sizing_mode="stretch_width")
