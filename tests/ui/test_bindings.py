"""Views bind to their view-model; the model's outputs are read-only outside it.

For each view-model: assigning one of its outputs (a status, a message, a table) from
outside raises, and a widget edit reaches the model's parameter through the widget's
binding, with no hand-written watcher in between.
"""

from __future__ import annotations

import panel as pn
import pytest

from gemma_panel.ui import CompareModel, ConfigModel, DataModel, RunsModel
from gemma_panel.ui.compare_view import CompareView
from gemma_panel.ui.data_view import DataView
from gemma_panel.ui.train_view import TrainView
from tests.ui.conftest import FAKE, REPO, recorded_run


def _read_only(model, **values) -> None:
    """Each assignment, from outside the model, raises (param lets an equal value pass)."""
    for name, value in values.items():
        assert getattr(model, name) != value, name
        with pytest.raises(TypeError, match=f"Constant parameter '{name}'"):
            setattr(model, name, value)


# -- compare ---------------------------------------------------------------------------------


def test_compare_outputs_are_read_only_and_the_view_follows_its_widgets(store):
    a = recorded_run(store, "lr-high", 3e-4)
    b = recorded_run(store, "lr-low", 1e-4, steps=4)
    cmp = CompareModel(store)
    view = CompareView(model=cmp)
    _read_only(cmp, curves={"loss": {}}, table=[{"run": "x"}], fields=[{"field": "x"}],
               samples=[{"prompt": "x"}],
               message="written by a view")
    assert cmp.message == "Pick two or more runs." and cmp.table == []
    view.chooser.value = [a.id, b.id]  # as the browser would
    assert cmp.chosen == [a.id, b.id]
    assert list(view.table.object["run"]) == [a.id, b.id]
    assert list(view.samples.object[a.id]) == ["lr-high"]
    assert view.charts["loss"].source.data["run"] == [a.id, b.id]
    view.axis.value = "tokens"
    assert cmp.x == "tokens"
    assert view.charts["loss"].source.data["xs"][0][:2] == [100, 200]
    assert view.charts["loss"].figure.xaxis.axis_label == "tokens"


# -- data ------------------------------------------------------------------------------------


def test_data_outputs_are_read_only_and_the_views_widgets_reach_the_model(tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("GEMMA_PANEL_DATA_ROOTS", str(tmp_path))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b", "extra": "x"}\n{"prompt": "c"\n'
                   '{"prompt": "d", "response": "e", "extra": "y"}\n')
    data = DataModel(model_source="")
    view = DataView(model=data)
    _read_only(data, status="written by a view", error="x", busy=True, report={"ok": True},
               verdict={"ok": True}, preview=[{}], rendered=[("x", True)], examples=[{}],
               token_stats={"x": 1}, augmented=[{}], columns=["x"], mapping={"prompt": "x"},
               generation=5)
    view.example.value = str(bad)  # as the browser would: the pick loads the file
    data.jobs.wait()
    assert data.path == str(bad) and data.report["rows_read"] == 3
    assert set(view.problems.value["kind"]) == {k["kind"] for k in data.problem_kinds()}
    view.code_select.value = "broken_json"
    assert data.code_filter == "broken_json"
    assert list(view.problems.value["where"]) == ["line 2"]
    view.row_input.value = 1
    assert data.row_index == 1 and data.rendered == data.examples[1]["pieces"]
    view.row_input.value = None  # a cleared box: the first example
    assert data.rendered == data.examples[0]["pieces"]
    prompt = next(s for s in view.mapping_box.select(pn.widgets.Select)
                  if s.label.startswith("prompt"))
    prompt.value = "extra"
    data.jobs.wait()
    assert data.overrides == {"prompt": "extra"} and data.mapping["prompt"] == "extra"
    view.dropper.refused = "big.csv: over the upload limit"  # as the dropper says it
    assert (data.status, data.error, data.busy) == ("Upload refused.",
                                                   "big.csv: over the upload limit", False)


# -- runs ------------------------------------------------------------------------------------


def test_runs_outputs_are_read_only_and_the_train_view_follows_the_model(store):
    a = recorded_run(store, "first", 1e-4)
    b = recorded_run(store, "second", 3e-4)
    runs = RunsModel(store, trainer=FAKE)
    view = TrainView(model=runs)
    _read_only(runs, status="succeeded", message="x", notice="written by a view", runs=[],
               samples=[{"step": 1}], log_tail="x", progress=1.0, step_text="", eta_text="x",
               can_cancel=False, can_resume=True)
    assert runs.selected == b.id and view.run_select.value == b.id
    assert view.run_select.options[f"{a.id} (queued)"] == a.id
    view.run_select.value = a.id  # as the browser would
    assert runs.selected == a.id
    assert f"**{a.id}**: **queued**" in view.status_pane.object
    assert view.status_pane.alert_type == "info"
    assert list(view.runs_table.value["id"]) == [b.id, a.id]
    runs.selected = None
    assert view.run_select.value is None and "No run selected" in view.status_pane.object
    assert view.cancel_button.disabled and view.resume_button.disabled
    store.update_run(a.id, status="cancelled", message="cancelled; checkpoint saved")
    view.run_select.value = a.id
    assert not view.resume_button.disabled and view.cancel_button.disabled
    assert view.status_pane.alert_type == "warning" and "checkpoint saved" in \
        view.status_pane.object
    assert view.run_select.options[f"{a.id} (cancelled)"] == a.id


def test_the_start_button_asks_the_model_which_says_what_to_fix(store):
    config = ConfigModel()
    config.set("train.learning_rate", 0.5)
    runs = RunsModel(store, trainer=FAKE)
    view = TrainView(model=runs, config=config)
    view.start_button.clicks += 1  # as the browser would
    assert runs.notice.startswith("Fix the recipe first (Configure tab): train.learning_rate")
    assert store.list_runs() == []


# -- no hand-written watchers -------------------------------------------------------------------


def test_views_bind_to_their_models_instead_of_watching_them():
    """Views use from_param, pn.bind, .rx and links; a ``.param.watch`` callback is the
    hand-written copying this replaced."""
    ui = REPO / "gemma_panel" / "ui"
    views = [*ui.glob("*_view.py"), ui / "app.py", ui / "charts.py"]
    watching = {p.name: n for p in views if (n := p.read_text().count(".param.watch("))}
    assert len(views) == 10 and watching == {}  # 8 *_view.py (plan: 14, chat: 16, vertex: 15) + 2
