"""The Export tab: pick a run, checkpoint, format and type; export; see the checks; download.

Every widget is bound to an ``ExportModel`` parameter; the outputs (status, output lines,
verification table, manifest, downloads) are the model's read-only parameters, rendered here.
"""

from __future__ import annotations

import json

import panel as pn
import param

from .data_view import frame
from .export_model import ExportModel


def _links(downloads: list) -> str:
    if not downloads:
        return "No export to download yet."
    return "Download: " + " · ".join(f"[{label}]({url})" if url else label
                                     for label, url in downloads)


def _manifest(manifest: dict) -> str:
    return json.dumps(manifest, indent=2) if manifest else ""


class ExportView(pn.viewable.Viewer):
    """Renders an ``ExportModel``."""

    model = param.ClassSelector(class_=ExportModel)

    def __init__(self, **params):
        super().__init__(**params)
        m = self.model
        self.run = pn.widgets.Select.from_param(m.param.run, name="Run")
        self.checkpoint = pn.widgets.Select.from_param(m.param.checkpoint, name="Checkpoint")
        self.fmt = pn.widgets.Select.from_param(m.param.fmt)
        self.quantize = pn.widgets.Select.from_param(m.param.quantize)
        self.replace = pn.widgets.Checkbox.from_param(m.param.replace)
        self.export = pn.widgets.Button(label="Export", button_type="primary",
                                        disabled=m.param.busy)
        self.export.on_click(lambda _: m.start())
        self.stop = pn.widgets.Button(label="Stop", disabled=pn.bind(lambda b: not b,
                                                                     m.param.busy))
        self.stop.on_click(lambda _: m.stop())
        self.refresh = pn.widgets.Button(label="Refresh runs")
        self.refresh.on_click(lambda _: m.refresh_runs())
        self.shown = pn.widgets.Select.from_param(m.param.shown, name="Show export")

    def __panel__(self):
        m = self.model
        table = {"index": False, "text_align": "start", "sizing_mode": "stretch_width"}
        return pn.Column(
            pn.Row(self.run, self.checkpoint, self.fmt, self.quantize,
                   sizing_mode="stretch_width"),
            pn.pane.Markdown(m.param.expected, css_classes=["gp-export-expected"]),
            pn.Row(self.export, self.stop, self.replace, self.refresh),
            pn.pane.Markdown(m.param.status, css_classes=["gp-export-status"]),
            pn.Card(pn.pane.Str(m.param.log, css_classes=["gp-export-log"],
                                sizing_mode="stretch_width", max_height=300),
                    title="Export output", collapsed=False),
            pn.pane.Markdown("### This run's exports"),
            pn.pane.DataFrame(pn.bind(frame, m.param.exports), css_classes=["gp-exports"],
                              **table),
            self.shown,
            pn.pane.Markdown(pn.bind(_links, m.param.downloads),
                             css_classes=["gp-export-downloads"]),
            pn.pane.Markdown("#### Verification"),
            pn.pane.DataFrame(pn.bind(frame, m.param.checks), css_classes=["gp-export-checks"],
                              **table),
            pn.Card(pn.pane.Markdown(m.param.readme), title="README (loading snippets)",
                    collapsed=True),
            pn.Card(pn.pane.Str(pn.bind(_manifest, m.param.manifest)), title="manifest.json",
                    collapsed=True),
            sizing_mode="stretch_width", name="Export")
