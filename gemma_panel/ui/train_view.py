"""The Train tab: start, cancel, resume; live curves streamed from the run store.

``tick()`` is called by the app's periodic callback: it asks the selected run's
``MetricFeed`` for what is new and streams it into the charts' ``ColumnDataSource``s
(``source.stream(..., rollover=N)``), so a point reaches the browser one tick after the
worker commits it.
"""

from __future__ import annotations

import html
import time

import panel as pn
import param

from gemma_panel.config import RecipeError

from .charts import ROLLOVER, live_figures
from .config_model import ConfigModel
from .config_view import data_verdict_pane
from .data_view import frame, table
from .runs_model import RunsModel

STATUS_ALERT = {"queued": "info", "running": "primary", "succeeded": "success",
                "failed": "danger", "cancelled": "warning", "lost": "danger"}


class LiveCharts(pn.viewable.Viewer):
    """The four live figures of one ``RunsModel``'s selected run."""

    model = param.ClassSelector(class_=RunsModel)
    x = param.Selector(default="step", objects=["step", "tokens"])

    def __init__(self, **params):
        super().__init__(**params)
        self.figures, self.sources = live_figures(self.x)
        self._feed = None
        self.last_tick = 0.0

    def tick(self) -> int:
        """Stream what is new into the charts; returns how many points were added."""
        feed = self.model.feed
        if feed is not self._feed:  # another run selected, or a resume: start over
            self._feed = feed
            for source in self.sources.values():
                source.data = {k: [] for k in source.data}
        kind, series = feed.poll()
        added = 0
        for name, data in series.items():
            source = self.sources[name]
            if kind == "reset":
                source.data = data
                added += len(data["step"])
            elif data["step"]:
                source.stream(data, rollover=ROLLOVER)
                added += len(data["step"])
        self.last_tick = time.time()
        return added

    def __panel__(self):
        panes = [pn.pane.Bokeh(fig, sizing_mode="stretch_width")
                 for fig in self.figures.values()]
        return pn.GridBox(*panes, ncols=2, sizing_mode="stretch_width")


class TrainView(pn.viewable.Viewer):
    """Runs, buttons, status, charts, samples and log of a ``RunsModel``."""

    model = param.ClassSelector(class_=RunsModel)
    config = param.ClassSelector(class_=ConfigModel, allow_None=True)

    def __init__(self, **params):
        super().__init__(**params)
        m = self.model
        self.charts = LiveCharts(model=m)
        self.run_select = pn.widgets.Select(label="Run", options=self._options(), width=420)
        self.run_select.value = m.selected
        self.run_select.param.watch(lambda e: setattr(m, "selected", e.new), "value")
        m.param.watch(self._selected_changed, "selected")
        m.param.watch(self._runs_changed, "runs")
        self.start_button = pn.widgets.Button(label="Start a run with this recipe",
                                              color="primary")
        self.start_button.on_click(self._start)
        self.cancel_button = pn.widgets.Button(label="Cancel", color="warning",
                                               disabled=not m.can_cancel)
        self.cancel_button.on_click(lambda _: m.cancel())
        self.resume_button = pn.widgets.Button(label="Resume", color="success",
                                               disabled=not m.can_resume)
        self.resume_button.on_click(lambda _: m.resume())
        m.param.watch(lambda e: setattr(self.cancel_button, "disabled", not e.new),
                      "can_cancel")
        m.param.watch(lambda e: setattr(self.resume_button, "disabled", not e.new),
                      "can_resume")
        self.runs_table = table(m.runs, page_size=8, selectable=1)
        m.param.watch(lambda e: setattr(self.runs_table, "value", frame(e.new)), "runs")
        self.runs_table.on_click(self._row_clicked)
        self.samples = table(m.samples, page_size=6, layout="fit_columns")
        m.param.watch(lambda e: setattr(self.samples, "value", frame(e.new)), "samples")
        self.status_pane = pn.pane.Alert("", css_classes=["gp-run-status"],
                                         sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(value=0, max=100, height=16,
                                               sizing_mode="stretch_width")
        self.log_pane = pn.pane.HTML("", sizing_mode="stretch_width")
        m.param.watch(self._show_status, ["selected", "status", "message", "step_text",
                                          "eta_text", "progress"])
        m.param.watch(self._show_log, "log_tail")
        self._show_status()
        self._show_log()

    def _options(self) -> dict:
        opts = {"(no run selected)": None}
        for r in self.model.runs:
            opts[f"{r['id']} ({r['status']})"] = r["id"]
        return opts

    def _runs_changed(self, _) -> None:
        options = self._options()
        if options != self.run_select.options:  # only when a run or a status changed
            self.run_select.options = options

    def _selected_changed(self, event) -> None:
        if self.run_select.value != event.new:
            self.run_select.options = self._options()
            self.run_select.value = event.new

    def _row_clicked(self, event) -> None:
        rows = self.model.runs
        if 0 <= event.row < len(rows):
            self.model.selected = rows[event.row]["id"]

    def _start(self, _) -> None:
        if self.config is None:
            return
        try:
            recipe = self.config.recipe()
        except RecipeError as exc:
            self.model.notice = "Fix the recipe first (Configure tab): " + "; ".join(exc.problems)
            return
        self.model.start(recipe)

    def _show_status(self, *_) -> None:
        """Update the status panes in place (no new Bokeh models once a second)."""
        m = self.model
        if m.selected is None:
            text, kind = "No run selected: start one, or pick one above.", "light"
        else:
            text = f"**{m.selected}**: **{m.status}** · {m.step_text} · {m.eta_text}"
            if m.message:
                text += f"  \n{m.message}"
            kind = STATUS_ALERT.get(m.status, "light")
        self.status_pane.param.update(object=text, alert_type=kind)
        self.progress.value = int(m.progress * 100)

    def _show_log(self, *_) -> None:
        self.log_pane.object = ("<pre style='max-height:420px;overflow:auto;font-size:0.8em'>"
                                + html.escape(self.model.log_tail or "(no log yet)") + "</pre>")

    def __panel__(self):
        m = self.model
        return pn.Column(
            pn.Row(self.start_button, self.cancel_button, self.resume_button,
                   pn.pane.Markdown(m.param.notice, css_classes=["gp-notice"])),
            *([data_verdict_pane(self.config)] if self.config is not None else []),
            pn.Row(self.run_select),
            self.status_pane, self.progress,
            self.charts,
            pn.Card(self.samples, title="Sample generations: base model vs fine-tuned"),
            pn.Card(self.log_pane, title="Log (last lines of the worker's log)"),
            pn.Card(self.runs_table, title="All runs", collapsed=False),
            sizing_mode="stretch_width", name="Train")

