"""The studio: seven tabs over one run store, served (``panel serve``) or in a notebook.

``create_app()`` builds one ``Studio`` per browser session (or notebook cell): its
view-models, their views, and one periodic callback that applies finished background
jobs and streams new metrics. Served, it returns a template (light and dark themes, with
a toggle); in a notebook, a plain layout.

Example:
    # dashboards/studio.py
    from gemma_panel.ui import create_app
    create_app().servable()
"""

from __future__ import annotations

import logging
import time

import panel as pn

from gemma_panel.config import Recipe, field_least
from gemma_panel.runs import DEFAULT_TRAINER, RunStore

from .chat_model import ChatModel
from .chat_view import ChatView
from .compare_model import CompareModel
from .compare_view import CompareView
from .config_model import ConfigModel
from .config_view import ConfigView
from .data_model import DataModel
from .data_view import DataView
from .export_model import ExportModel
from .export_view import ExportView
from .jobs import Jobs
from .runs_model import RunsModel
from .train_view import LiveCharts, TrainView
from .vertex_model import VertexModel
from .vertex_view import VertexView

log = logging.getLogger(__name__)
TITLE = "Gemma fine-tuning studio"
POLL_MS = 250  # metrics reach the page within one tick of the worker's commit


def is_served() -> bool:
    """True inside a ``panel serve`` session (a Bokeh server document with a session)."""
    doc = pn.state.curdoc
    return doc is not None and getattr(doc, "session_context", None) is not None


class Studio:
    """The dashboard's state and views for one session.

    Args:
        store: the run store (default: the one under GEMMA_PANEL_HOME).
        recipe: the recipe to start from (default: recipes/quickstart.yaml of the checkout,
            else the schema's defaults).
        trainer: ``module:function`` the workers run (tests use a stand-in).
    """

    def __init__(self, store: RunStore | None = None, recipe: Recipe | None = None,
                 trainer: str = DEFAULT_TRAINER):
        self.store = store or RunStore()
        self.jobs = Jobs()
        self.config = ConfigModel(recipe, jobs=self.jobs)
        self.data = DataModel(jobs=self.jobs)
        self.runs = RunsModel(self.store, trainer=trainer, jobs=self.jobs)
        self.compare = CompareModel(self.store)
        self.export = ExportModel(self.store)
        self.chat = ChatModel(self.store, save_prompts=lambda prompts: self.config.set(
            "eval.sample_prompts", prompts))
        self._link()
        self.data_view = DataView(model=self.data)
        self.config_view = ConfigView(model=self.config)
        self.train_view = TrainView(model=self.runs, config=self.config)
        self.compare_view = CompareView(model=self.compare)
        self.export_view = ExportView(model=self.export)
        self.tabs = pn.Tabs(("Data", self.data_view), ("Configure", self.config_view),
                            ("Train", self.train_view), ("Compare", self.compare_view),
                            ("Export", self.export_view), ("Chat", ChatView(model=self.chat)),
                            ("Vertex AI", VertexView(model=VertexModel(self.runs, self.config))),
                            dynamic=True, sizing_mode="stretch_width")
        self._last_status = self._last_list = 0.0
        self.callback = None

    # -- the Data tab and the recipe agree on the dataset's settings -----------------------
    def _link(self) -> None:
        cfg, data = self.config, self.data

        def from_config(*_):
            v, least = cfg.settings, field_least("data.sequence_length")
            update = {"model_source": v["model.source"], "template": v["data.template"],
                      "text_mode": v["data.text_mode"],
                      "sequence_length": max(least, int(v["data.sequence_length"] or least))}
            recipe = cfg.valid_recipe()  # the Data tab's verdict uses its other data settings
            if recipe is not None and _data_part(recipe) != _data_part(data.recipe):
                update["recipe"] = recipe
            data.param.update(**update)
        from_config()
        pn.bind(from_config, cfg.param.settings, watch=True)

        names = {"template": "data.template", "text_mode": "data.text_mode",
                 "sequence_length": "data.sequence_length", "path": "data.train_path",
                 "overrides": "data.columns"}

        def to_config(name, value):
            if cfg.settings.get(names[name]) != value:
                cfg.set(names[name], value)
        for name in names:  # each of the Data tab's settings, when the user changes it
            pn.bind(to_config, name, data.param[name], watch=True)
        # The Data tab's token lengths mean the model's tokenizer is loaded: plan with them.
        pn.bind(lambda _: cfg.plan.refresh(), data.param.token_stats, watch=True)

    # -- the periodic callback ------------------------------------------------------------------
    def tick(self) -> None:
        """Apply finished jobs; stream new metrics; now and then re-read statuses and runs."""
        try:
            self.jobs.poll()
            self.train_view.charts.tick()
            self.export.poll()
            self.chat.poll()
            now = time.monotonic()
            if now - self._last_status > 1.0:
                self._last_status = now
                self.runs.refresh_status()
            if now - self._last_list > 3.0:
                self._last_list = now
                self.runs.refresh_runs()
                self.runs.poll_remote()
                self.compare.refresh_choices()
                if not self.export.busy:
                    self.export.refresh_runs()
                if not self.chat.busy:
                    self.chat.refresh_runs()
        except Exception:  # a bad moment must not stop the callback for good
            log.exception("dashboard tick failed")

    def start_polling(self, period_ms: int = POLL_MS) -> None:
        if self.callback is None:
            self.tick()
            self.callback = pn.state.add_periodic_callback(self.tick, period=period_ms)

    def layout(self) -> pn.Column:
        return pn.Column(pn.pane.Markdown(f"## {TITLE}"), self.tabs,
                         sizing_mode="stretch_width")

    def template(self, theme: str | None = None):
        template = pn.template.FastListTemplate(
            title=TITLE, main=[self.tabs], theme_toggle=True,
            **({"theme": theme} if theme else {}))
        return template


def _data_part(recipe: Recipe | None):
    """What of a recipe its data preparation reads: the data and model sections."""
    return None if recipe is None else (recipe.to_dict()["data"], recipe.to_dict()["model"])


def create_app(store: RunStore | None = None, recipe: Recipe | None = None, *,
               trainer: str = DEFAULT_TRAINER, served: bool | None = None,
               theme: str | None = None, poll_ms: int = POLL_MS):
    """The whole dashboard: a template when served, a plain layout in a notebook.

    Args:
        store, recipe, trainer: see ``Studio``.
        served: force one form (default: detected).
        theme: "default" or "dark" for the served template (the page's ?theme= and the
            toggle in its header also switch it).
        poll_ms: how often new metrics are read from the store.
    """
    pn.extension("tabulator", "filedropper")
    studio = Studio(store, recipe, trainer)
    studio.start_polling(poll_ms)
    served = is_served() if served is None else served
    app = studio.template(theme) if served else studio.layout()
    app.studio = studio  # for tests and notebooks: the view-models behind the page
    return app


def live_chart(run_id: str | None = None, store: RunStore | None = None,
               poll_ms: int = POLL_MS) -> pn.Column:
    """One run's live charts and status, for a notebook cell (default: the newest run)."""
    pn.extension()
    runs = RunsModel(store or RunStore())
    if run_id is not None:
        runs.selected = runs.store.get(run_id).id
    charts = LiveCharts(model=runs)

    def tick():
        charts.tick()
        runs.refresh_status()
    tick()
    pn.state.add_periodic_callback(tick, period=poll_ms)
    status = pn.pane.Markdown(pn.bind(lambda s, st, m: f"**{s}**: {st} {m}", runs.param.selected,
                                      runs.param.status, runs.param.message))
    out = pn.Column(status, charts, sizing_mode="stretch_width")
    out.runs, out.charts = runs, charts
    return out


def compare_view(run_ids: list[str], store: RunStore | None = None, x: str = "step"):
    """The Compare view of some runs, for a notebook cell."""
    pn.extension("tabulator")
    model = CompareModel(store or RunStore())
    model.param.update(x=x, chosen=[model.store.get(r).id for r in run_ids])
    return CompareView(model=model)
