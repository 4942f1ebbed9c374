"""The Train tab: start, cancel, resume; live curves streamed from the run store.

``tick()`` is called by the app's periodic callback: it asks the selected run's
``MetricFeed`` for what is new and streams it into the charts' ``ColumnDataSource``s
(``source.stream(..., rollover=N)``), so a point reaches the browser one tick after the
worker commits it.
"""

from __future__ import annotations

import html

import panel as pn
import param

from .charts import ROLLOVER, live_figures, show_present_series
from .config_model import ConfigModel
from .config_view import data_verdict_pane
from .data_view import table
from .runs_model import RunsModel

STATUS_ALERT = {"queued": "info", "running": "primary", "succeeded": "success",
                "failed": "danger", "cancelled": "warning", "lost": "danger"}


class LiveCharts(pn.viewable.Viewer):
    """The live figures of one ``RunsModel``'s selected run: loss, perplexity, learning
    rate, tokens/s, and the evaluation metrics of its task as each evaluation records them."""

    model = param.ClassSelector(class_=RunsModel)
    x = param.Selector(default="step", objects=["step", "tokens"])

    def __init__(self, **params):
        super().__init__(**params)
        self.figures, self.sources = live_figures(self.x)
        self._feed = None
        pn.bind(self._axis, self.param.x, watch=True)

    def _axis(self, x: str) -> None:
        """Draw every series against steps or tokens (the same glyphs, another column)."""
        for fig in self.figures.values():
            for renderer in fig.renderers:
                renderer.glyph.x = x
            fig.xaxis.axis_label = x

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
        if added or kind == "reset":
            show_present_series(self.figures["evaluation"])
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
        self.axis = pn.widgets.RadioButtonGroup.from_param(self.charts.param.x, name="x axis")
        # The picker follows the list of runs (labels with their status) and the selection
        # both ways.
        self.run_select = pn.widgets.Select(label="Run", options=pn.bind(_options, m.param.runs),
                                            value=m.selected, width=420)
        self.run_select.link(m, value="selected", bidirectional=True)
        self.start_button = pn.widgets.Button(label="Start a run with this recipe",
                                              color="primary")
        self.start_button.on_click(self._start)
        self.cancel_button = pn.widgets.Button(label="Cancel", color="warning",
                                               disabled=m.param.can_cancel.rx.not_())
        self.cancel_button.on_click(lambda _: m.cancel())
        self.resume_button = pn.widgets.Button(label="Resume", color="success",
                                               disabled=m.param.can_resume.rx.not_())
        self.resume_button.on_click(lambda _: m.resume())
        self.runs_table = table(m.param.runs, page_size=8, selectable=1)
        self.runs_table.on_click(self._row_clicked)
        self.samples = table(m.param.samples, page_size=6, layout="fit_columns")
        # The panes are updated in place (no new Bokeh models once a second).
        status = pn.bind(_status, m.param.selected, m.param.status, m.param.message,
                         m.param.step_text, m.param.eta_text)
        self.status_pane = pn.pane.Alert(status.rx()[0], alert_type=status.rx()[1],
                                         css_classes=["gp-run-status"],
                                         sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(
            value=pn.bind(lambda p: int(p * 100), m.param.progress), max=100, height=16,
            sizing_mode="stretch_width")
        self.log_pane = pn.pane.HTML(pn.bind(_log_html, m.param.log_tail),
                                     sizing_mode="stretch_width")
        self.manage = RunManager(model=m)

    def _row_clicked(self, event) -> None:
        rows = self.model.runs
        if 0 <= event.row < len(rows):
            self.model.selected = rows[event.row]["id"]

    def _start(self, _) -> None:
        if self.config is not None:
            self.model.start_edited(self.config.recipe)

    def __panel__(self):
        m = self.model
        return pn.Column(
            pn.Row(self.start_button, self.cancel_button, self.resume_button,
                   pn.pane.Markdown(m.param.notice, css_classes=["gp-notice"])),
            *([data_verdict_pane(self.config)] if self.config is not None else []),
            pn.Row(self.run_select, self.axis),
            self.status_pane, self.progress,
            self.charts,
            pn.Card(self.samples, title="Sample generations: base model vs fine-tuned"),
            pn.Card(self.log_pane, title="Log (last lines of the worker's log)"),
            pn.Card(self.manage.filters, self.runs_table, self.manage,
                    title="All runs: filter, rename, tag, delete", collapsed=False),
            sizing_mode="stretch_width", name="Train")


class RunManager(pn.viewable.Viewer):
    """The selected run's name, notes and tags, its delete button and the confirmation
    step; ``filters`` holds the list's status, tag and model pickers."""

    model = param.ClassSelector(class_=RunsModel)

    def __init__(self, **params):
        super().__init__(**params)
        m = self.model
        self.filters = pn.Row(*(pn.widgets.Select.from_param(p, width=200) for p in (
            m.param.status_filter, m.param.tag_filter, m.param.model_filter)))
        self.name_input = pn.widgets.TextInput.from_param(m.param.name_text, width=300,
                                                          css_classes=["gp-run-name"])
        self.tags_input = pn.widgets.TextInput.from_param(m.param.tags_text, width=300,
                                                          css_classes=["gp-run-tags"])
        self.notes_input = pn.widgets.TextAreaInput.from_param(m.param.notes_text, height=80,
                                                         sizing_mode="stretch_width")
        nothing = m.param.selected.rx.is_(None)
        self.save = pn.widgets.Button(label="Save name, notes and tags", disabled=nothing)
        self.save.on_click(lambda _: m.save_labels())
        self.delete = pn.widgets.Button(label="Delete run ...", color="danger",
                                        disabled=nothing)
        self.delete.on_click(lambda _: m.ask_delete())
        asked = m.param.delete_question.rx.bool()
        self.confirm = pn.widgets.Button(label="Yes, delete it", color="danger",
                                         visible=asked)
        self.confirm.on_click(lambda _: m.confirm_delete())
        self.keep = pn.widgets.Button(label="No, keep it", visible=asked)
        self.keep.on_click(lambda _: m.cancel_delete())
        self.question = pn.pane.Alert(m.param.delete_question, alert_type="danger",
                                      visible=asked, css_classes=["gp-delete-question"])

    def __panel__(self):
        return pn.Column(pn.Row(self.name_input, self.tags_input), self.notes_input,
                         pn.Row(self.save, self.delete),
                         self.question, pn.Row(self.confirm, self.keep),
                         sizing_mode="stretch_width")


def _options(runs: list[dict]) -> dict:
    """The run picker's choices: each run's id, labelled with its status."""
    opts = {"(no run selected)": None}
    for r in runs:
        opts[f"{r['id']} ({r['status']})"] = r["id"]
    return opts


def _status(selected, status: str, message: str, step_text: str, eta_text: str):
    """The status pane's text and alert kind."""
    if selected is None:
        return "No run selected: start one, or pick one above.", "light"
    text = f"**{selected}**: **{status}** · {step_text} · {eta_text}"
    if message:
        text += f"  \n{message}"
    return text, STATUS_ALERT.get(status, "light")


def _log_html(log_tail: str) -> str:
    return ("<pre style='max-height:420px;overflow:auto;font-size:0.8em'>"
            + html.escape(log_tail or "(no log yet)") + "</pre>")

