"""The Train tab's evaluation chart (the run's task metrics, streamed as evaluations record
them) and its tokens axis.

(Beside the Export tab's tests: both came with issue 16.)
"""

from __future__ import annotations

from gemma_panel.ui import RunsModel
from gemma_panel.ui.train_view import LiveCharts
from tests.ui.conftest import recorded_run


def _legend(charts) -> list[str]:
    return [item.label["value"] for item in charts.figures["evaluation"].legend.items
            if item.visible]


def test_the_evaluation_chart_shows_the_tasks_metrics_as_they_arrive(store):
    run = recorded_run(store, "eval-chart", 2e-4, steps=4)
    store.add_metrics(run.id, 0, 4, 400, {"val_token_accuracy": 0.31, "accuracy": 0.5,
                                          "macro_f1": 0.4})
    runs = RunsModel(store)
    runs.selected = run.id
    charts = LiveCharts(model=runs)
    charts.tick()
    assert charts.sources["accuracy"].data["value"] == [0.5]
    assert charts.sources["val_token_accuracy"].data["step"] == [4]
    # A classification run: accuracy and macro-F1, not the instruction task's metrics.
    assert _legend(charts) == ["validation token accuracy", "accuracy", "macro-F1"]
    store.add_metrics(run.id, 0, 8, 800, {"val_token_accuracy": 0.52, "accuracy": 0.75})
    assert charts.tick() == 2
    assert list(charts.sources["accuracy"].data["value"]) == [0.5, 0.75]
    assert list(charts.sources["accuracy"].data["tokens"]) == [400, 800]


def test_the_train_charts_switch_to_a_tokens_axis(store):
    from gemma_panel.ui.train_view import TrainView

    run = recorded_run(store, "axis", 2e-4, steps=3)
    runs = RunsModel(store)
    runs.selected = run.id
    view = TrainView(model=runs)
    view.axis.value = "tokens"  # as the browser would
    assert view.charts.x == "tokens"
    for fig in view.charts.figures.values():
        assert {r.glyph.x for r in fig.renderers} == {"tokens"}
        assert fig.xaxis.axis_label == "tokens"
