"""The "Run on Vertex AI" tab: the job's settings, its plan (memory fit, time, cost, the job
spec), and a submit button that stays disabled until the plan for these settings is shown.

Every widget is bound to a ``VertexModel`` parameter (vertex_model.py); the outputs are its
read-only parameters, rendered here.
"""

from __future__ import annotations

import panel as pn
import param

from .plan_view import BADGE_ALERTS
from .vertex_model import VertexModel

INTRO = ("Train the Configure tab's recipe as a Vertex AI custom job on a TPU or GPU. "
         "The data must be on Cloud Storage (gs://). Show the plan first: nothing is sent "
         "until you confirm it. The job then appears in the Train tab's list, where Cancel "
         "cancels it.")


def _plan(lines: list, fit: dict):
    if not lines:
        return pn.pane.Markdown("No plan shown yet.", css_classes=["gp-vertex-plan"])
    body = "\n".join(lines)
    kind = BADGE_ALERTS.get(fit.get("badge"), "light")
    memory = (pn.pane.Alert(f"**Memory: {fit['text']}**", alert_type=kind,
                            css_classes=["gp-vertex-fit"]) if fit else pn.Spacer(height=0))
    return pn.Column(memory, pn.pane.Markdown(f"```text\n{body}\n```",
                                              css_classes=["gp-vertex-plan"]),
                     sizing_mode="stretch_width")


class VertexView(pn.viewable.Viewer):
    """Renders a ``VertexModel``."""

    model = param.ClassSelector(class_=VertexModel)

    def __init__(self, **params):
        super().__init__(**params)
        m = self.model
        self.accelerator = pn.widgets.Select.from_param(m.param.accelerator, name="Accelerator")
        self.replicas = pn.widgets.IntInput.from_param(m.param.replicas, name="GPU machines",
                                                       start=1)
        self.spot = pn.widgets.Checkbox.from_param(m.param.spot, name="Spot (cheaper, may be "
                                                                      "preempted)")
        self.region = pn.widgets.TextInput.from_param(m.param.region, name="Region")
        self.project = pn.widgets.TextInput.from_param(m.param.project, name="Project",
                                                       placeholder="my-project")
        self.output = pn.widgets.TextInput.from_param(m.param.output, name="Job folders on",
                                                      placeholder="gs://my-bucket/jobs")
        self.job_id = pn.widgets.TextInput.from_param(m.param.job_id, name="Job folder name",
                                                      placeholder="recipe name + time")
        self.show = pn.widgets.Button(label="Show the plan", button_type="primary",
                                      disabled=m.param.busy, css_classes=["gp-vertex-show"])
        self.show.on_click(lambda _: m.show_plan())
        self.confirm = pn.widgets.Button(
            label="Confirm and submit", button_type="success", css_classes=["gp-vertex-submit"],
            disabled=pn.bind(lambda ok, busy: busy or not ok, m.param.can_submit, m.param.busy))
        self.confirm.on_click(lambda _: m.confirm())

    def __panel__(self):
        m = self.model
        return pn.Column(
            pn.pane.Markdown(f"### Run on Vertex AI\n{INTRO}"),
            pn.Row(self.accelerator, self.replicas, self.spot, self.region,
                   sizing_mode="stretch_width"),
            pn.Row(self.project, self.output, self.job_id, sizing_mode="stretch_width"),
            pn.Row(self.show, self.confirm),
            pn.pane.Markdown(m.param.status, css_classes=["gp-vertex-status"],
                             sizing_mode="stretch_width"),
            pn.bind(_plan, m.param.plan_lines, m.param.fit),
            pn.Card(pn.pane.Markdown(pn.bind(lambda j: f"```json\n{j}\n```" if j else
                                             "No job yet.", m.param.job_json),
                                     css_classes=["gp-vertex-job"]),
                    title="The job that will be sent", collapsed=True,
                    sizing_mode="stretch_width"),
            sizing_mode="stretch_width")
