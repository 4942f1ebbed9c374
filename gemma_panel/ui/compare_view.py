"""The Compare tab: overlaid curves, a metrics table, differing settings, samples.

Its tables are HTML (``pn.pane.DataFrame``), not Tabulators: a Tabulator drops a data change
that reaches the browser while it is still rebuilding after a change of columns (Panel's
tabulator.ts ``setData`` returns early while ``_building``), so picking a second run right
after the first left the metrics table with the first run's single row.
"""

from __future__ import annotations

import panel as pn
import param

from .charts import CompareChart
from .compare_model import CompareModel
from .data_view import frame


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
        self.table = _html_table(m.param.table)
        self.fields = _html_table(m.param.fields)
        self.samples = _html_table(m.param.samples)
        self.grid = pn.GridBox(ncols=2, sizing_mode="stretch_width")
        self.charts: dict[str, CompareChart] = {}
        self.panes: dict[str, pn.pane.Bokeh] = {}
        # The figures are Bokeh models, updated in place (no new models on each change).
        pn.bind(self._draw, m.param.curves, watch=True)
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


def _html_table(rows: param.Parameter) -> pn.pane.DataFrame:
    """A plain HTML table of a parameter's rows (one <tr> per row, every row shown)."""
    return pn.pane.DataFrame(pn.bind(frame, rows), index=False, text_align="start",
                             sizing_mode="stretch_width",
                             css_classes=["gp-compare-table"], max_height=400)
