"""The Train tab's run list managed: filters, name/notes/tags fields, delete with a
confirmation step (the view-model and the widgets bound to it; no browser)."""

from __future__ import annotations

import pytest

from gemma_panel.runs import statuses as st
from gemma_panel.runs import submit
from gemma_panel.ui import RunsModel
from gemma_panel.ui.train_view import TrainView
from tests.ui.conftest import FAKE, fake_recipe, recorded_run, wait_for
from tests.ui.test_bindings import _read_only


def _ids(runs: RunsModel) -> list[str]:
    return sorted(r["id"] for r in runs.runs)


def test_the_filters_narrow_the_list_and_the_picker(store):
    a = recorded_run(store, "a", 1e-4)
    b = store.create_run(fake_recipe("model.source=gemma2-2b", name="b"))
    store.request_cancel(b.id)
    store.set_tags(a.id, ["sweep"])
    runs = RunsModel(store, trainer=FAKE)
    view = TrainView(model=runs)
    assert runs.param.tag_filter.objects == ["all", "sweep"]
    assert runs.param.model_filter.objects == ["all", *sorted([a.model, "gemma2-2b"])]
    view.manage.filters[1].value = "sweep"  # the tag picker, as the browser would
    assert _ids(runs) == [a.id] and list(view.runs_table.value["id"]) == [a.id]
    assert runs.param.selected.objects == [None, a.id]
    runs.tag_filter = "all"
    view.manage.filters[0].value = "cancelled"
    assert _ids(runs) == [b.id]
    view.manage.filters[0].value = "all"
    view.manage.filters[2].value = "gemma2-2b"
    assert _ids(runs) == [b.id] and runs.runs[0]["model"] == "gemma2-2b"


def test_the_fields_show_the_selected_run_and_save_its_labels(store):
    a = recorded_run(store, "first", 1e-4)
    runs = RunsModel(store, trainer=FAKE)
    view = TrainView(model=runs)
    assert runs.selected == a.id and view.manage.name_input.value == "first"
    view.manage.name_input.value = "rank 16"
    view.manage.tags_input.value = "sweep, best"
    view.manage.notes_input.value = "loss flat after step 4"
    view.manage.save.clicks += 1
    run = store.get(a.id)
    assert (run.name, run.tags, run.notes) == ("rank 16", ("best", "sweep"),
                                               "loss flat after step 4")
    assert runs.runs[0]["name"] == "rank 16" and runs.runs[0]["tags"] == "best, sweep"
    assert "sweep" in runs.param.tag_filter.objects
    view.manage.tags_input.value = "two words;"
    view.manage.save.clicks += 1
    assert runs.notice.startswith("Not saved: tag") and store.get(a.id).tags == ("best", "sweep")
    runs.selected = None
    assert view.manage.name_input.value == "" and view.manage.save.disabled


def test_delete_asks_first_and_keep_it_keeps_it(store):
    a = recorded_run(store, "first", 1e-4)
    store.request_cancel(a.id)
    runs = RunsModel(store, trainer=FAKE)
    view = TrainView(model=runs)
    _read_only(runs, delete_question="written by a view")
    assert not view.manage.confirm.visible
    view.manage.delete.clicks += 1
    assert "Delete run" in runs.delete_question and "cancelled first" not in \
        runs.delete_question
    assert view.manage.confirm.visible and view.manage.question.visible
    view.manage.keep.clicks += 1
    assert runs.delete_question == "" and not view.manage.confirm.visible
    view.manage.confirm.clicks += 1  # no question asked: nothing happens
    runs.jobs.wait()
    assert store.get(a.id).status == st.CANCELLED
    view.manage.delete.clicks += 1
    runs.selected = None  # another selection drops the question
    assert runs.delete_question == ""
    runs.selected = a.id
    view.manage.delete.clicks += 1
    view.manage.confirm.clicks += 1
    runs.jobs.wait()
    assert store.list_runs() == [] and runs.runs == [] and runs.selected is None
    assert runs.notice == f"Deleted {a.id} (first)."


def test_a_running_run_is_cancelled_first_then_deleted(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.2")
    run = submit(fake_recipe("train.max_steps=200"), store, trainer=FAKE)
    wait_for(lambda: store.get(run.id).step >= 1, what="a step")
    runs = RunsModel(store, trainer=FAKE)
    assert runs.selected == run.id
    runs.ask_delete()
    assert "It is running: it is cancelled first" in runs.delete_question
    runs.confirm_delete()
    runs.jobs.wait()
    assert store.list_runs() == [] and not store.folder(run.id).path.exists()
    assert runs.notice.startswith("Deleted")


@pytest.mark.parametrize("name", ["", "x" * 101])
def test_a_bad_name_is_refused_and_nothing_changes(store, name):
    a = recorded_run(store, "first", 1e-4)
    runs = RunsModel(store, trainer=FAKE)
    runs.name_text = name
    runs.save_labels()
    assert "Not saved" in runs.notice and store.get(a.id).name == "first"
