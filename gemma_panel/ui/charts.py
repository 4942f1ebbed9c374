"""Bokeh figures of the dashboard: live training curves, compare curves, token lengths.

Each live series has its own ``ColumnDataSource`` named ``train-<series>`` (columns step,
tokens, value, time); the Train view streams into it, and the browser tests and the
latency benchmark find it by that name (``Bokeh.documents[0].get_model_by_name``).
"""

from __future__ import annotations

from bokeh.models import ColumnDataSource, HoverTool, Range1d, Span
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from .runs_model import CHARTS, COLUMNS

TITLES = {"loss": "Loss (training, validation)", "perplexity": "Perplexity",
          "learning_rate": "Learning rate", "tokens_per_s": "Tokens per second",
          "evaluation": "Evaluation (at each evaluation step)"}
LABELS = {"loss": "training", "val_loss": "validation", "perplexity": "training (exp loss)",
          "val_perplexity": "validation", "learning_rate": "learning rate",
          "tokens_per_s": "tokens/s", "val_token_accuracy": "validation token accuracy",
          "accuracy": "accuracy", "macro_f1": "macro-F1", "exact_match": "exact match",
          "token_f1": "token F1"}
ROLLOVER = 200_000  # points kept per series in the browser


def _figure(title: str, x_label: str, y_label: str, **kw):
    fig = figure(title=title, height=260, sizing_mode="stretch_width",
                 tools="pan,wheel_zoom,box_zoom,reset,save", x_axis_label=x_label,
                 y_axis_label=y_label, **kw)
    fig.toolbar.logo = None
    return fig


def live_figures(x: str = "step") -> tuple[dict, dict[str, ColumnDataSource]]:
    """One figure per chart of ``CHARTS`` and one source per series, empty."""
    figures, sources = {}, {}
    for chart, series in CHARTS.items():
        fig = _figure(TITLES[chart], x, chart.replace("_", " "), name=f"chart-{chart}")
        for i, name in enumerate(series):
            source = ColumnDataSource({c: [] for c in COLUMNS}, name=f"train-{name}")
            color = Category10_10[i]
            dash = "dashed" if name.startswith("val_") else "solid"
            fig.line(x, "value", source=source, color=color, line_width=2, line_dash=dash,
                     legend_label=LABELS[name])
            if name.startswith("val_") or chart == "evaluation":  # points at eval steps
                fig.scatter(x, "value", source=source, color=color, size=6)
            sources[name] = source
        fig.add_tools(HoverTool(tooltips=[("step", "@step"), ("tokens", "@tokens{0,0}"),
                                          ("value", "@value{0.0000g}")], mode="vline"))
        fig.legend.location = "top_right"
        fig.legend.click_policy = "hide"
        figures[chart] = fig
    return figures, sources


def show_present_series(fig) -> None:
    """Show in ``fig``'s legend only the series that have points (a run's task has some
    metrics, not all)."""
    for item in fig.legend.items:
        item.visible = any(len(r.data_source.data.get("step", ())) for r in item.renderers)


class CompareChart:
    """One metric, one line per run, on a shared step or token axis; updated in place.

    The lines live in one ``multi_line`` source named ``compare-<metric>`` (columns xs, ys,
    run, color), so choosing other runs replaces data, never models.
    """

    def __init__(self, metric: str):
        self.metric = metric
        self.figure = _figure(metric.replace("_", " "), "step", metric,
                              name=f"compare-chart-{metric}")
        self.source = ColumnDataSource({"xs": [], "ys": [], "run": [], "color": []},
                                       name=f"compare-{metric}")
        self.figure.multi_line("xs", "ys", source=self.source, color="color", line_width=2,
                               legend_field="run")
        self.figure.add_tools(HoverTool(tooltips=[("run", "@run"), ("x", "$x{0,0}"),
                                                  (metric, "$y{0.0000g}")]))
        self.figure.legend.location = "top_right"

    def update(self, runs: dict[str, tuple[list, list]], x: str) -> None:
        ids = list(runs)
        self.source.data = {"xs": [list(runs[r][0]) for r in ids],
                            "ys": [list(runs[r][1]) for r in ids], "run": ids,
                            "color": [Category10_10[i % 10] for i in range(len(ids))]}
        self.figure.xaxis.axis_label = x


class HistogramChart:
    """Total tokens per example, with the sequence-length cut-off marked; updated in place."""

    def __init__(self):
        # A fixed x range, set from the data and the cut-off at each update (a data range
        # would leave the cut-off out of view when no example reaches it).
        self.figure = _figure("Tokens per example (prompt + response)", "tokens", "examples",
                              name="token-histogram", x_range=Range1d(0, 1))
        self.source = ColumnDataSource({"top": [], "left": [], "right": []},
                                       name="token-histogram-source")
        self.figure.quad(top="top", bottom=0, left="left", right="right", source=self.source,
                         fill_color=Category10_10[0], line_color="white", fill_alpha=0.8)
        self.cutoff = Span(location=0, dimension="height", line_color="red",
                           line_dash="dashed", line_width=2, visible=False, name="cutoff")
        self.figure.add_layout(self.cutoff)
        self.figure.add_tools(HoverTool(tooltips=[("tokens", "@left{0}-@right{0}"),
                                                  ("examples", "@top")]))

    def update(self, stats: dict) -> None:
        hist = (stats.get("total") or {}).get("histogram") or {"counts": [], "edges": []}
        counts, edges = hist["counts"], hist["edges"]
        self.source.data = {"top": counts, "left": edges[:-1], "right": edges[1:]}
        seq = stats.get("sequence_length")
        self.cutoff.visible = bool(seq)
        self.cutoff.location = seq or 0
        if edges:  # keep the cut-off in view even when every example is longer or shorter
            low, high = min(edges[0], seq or edges[0]), max(edges[-1], seq or edges[-1])
            pad = 0.03 * max(1.0, high - low)
            self.figure.x_range.start, self.figure.x_range.end = low - pad, high + pad
        title = "Tokens per example (prompt + response)"
        if seq:
            title += (f"; cut-off {seq} (red): {stats.get('truncated_examples', 0)} of "
                      f"{stats.get('examples', 0)} examples cut")
        self.figure.title.text = title
