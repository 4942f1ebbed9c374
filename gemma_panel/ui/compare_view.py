"""The Compare tab: overlaid curves, a metrics table, differing settings, samples."""

from __future__ import annotations

import panel as pn
import param

from .charts import CompareChart
from .compare_model import CompareModel
from .data_view import frame, table


class CompareView(pn.viewable.Viewer):
    """Renders a ``CompareModel``."""

    model = param.ClassSelector(class_=CompareModel)

    def __init__(self, **params):
        super().__init__(**params)
        m = self.model
        self.chooser = pn.widgets.MultiChoice.from_param(m.param.chosen, label="Runs to compare",
                                                         sizing_mode="stretch_width")
        self.axis = pn.widgets.RadioButtonGroup.from_param(m.param.x, label="x axis")
        self.refresh = pn.widgets.Button(label="Refresh")
        self.refresh.on_click(lambda _: (m.refresh_choices(), m.compute()))
        self.table = table(m.table, page_size=10)
        self.fields = table(m.fields, page_size=20)
        self.samples = table(m.samples, page_size=6, layout="fit_columns")
        self.grid = pn.GridBox(ncols=2, sizing_mode="stretch_width")
        self.charts: dict[str, CompareChart] = {}
        self.panes: dict[str, pn.pane.Bokeh] = {}
        m.param.watch(lambda e: setattr(self.table, "value", frame(e.new)), "table")
        m.param.watch(lambda e: setattr(self.fields, "value", frame(e.new)), "fields")
        m.param.watch(lambda e: setattr(self.samples, "value", frame(e.new)), "samples")
        m.param.watch(self._draw, ["curves"])
        self._draw()

    def _draw(self, *_) -> None:
        m = self.model
        for metric, runs in m.curves.items():
            if metric not in self.charts:  # one chart per metric, kept and updated
                self.charts[metric] = CompareChart(metric)
                self.panes[metric] = pn.pane.Bokeh(self.charts[metric].figure,
                                                   sizing_mode="stretch_width")
            self.charts[metric].update(runs, m.x)
        for metric, chart in self.charts.items():
            if metric not in m.curves:
                chart.update({}, m.x)
        shown = [self.panes[metric] for metric in m.curves]
        if [id(p) for p in self.grid.objects] != [id(p) for p in shown]:
            self.grid.objects = shown

    def __panel__(self):
        m = self.model
        return pn.Column(
            pn.Row(self.chooser, self.axis, self.refresh, sizing_mode="stretch_width"),
            pn.pane.Markdown(m.param.message, css_classes=["gp-compare-message"]),
            self.grid,
            pn.Card(self.table, title="Metrics (final and best of each run)"),
            pn.Card(self.fields, title="Recipe fields that differ"),
            pn.Card(self.samples, title="Samples side by side (latest evaluation of each run)"),
            sizing_mode="stretch_width", name="Compare")
