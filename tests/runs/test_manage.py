"""Names, notes, tags, the filtered list, and deletion as a user asks for it (manage.py)."""

from __future__ import annotations

import os

import pytest

from gemma_panel.runs import RunNotFound, RunStateError, delete_run, submit
from gemma_panel.runs import statuses as st
from gemma_panel.runs.errors import LabelError
from tests.runs.conftest import FAKE, fake_recipe, wait_for


def test_rename_notes_and_tags_are_kept_and_the_id_stays(store):
    run = store.create_run(fake_recipe(name="first"))
    renamed = store.rename(run.id[:8], "  rank 16,\n lr 2e-4 ")
    assert (renamed.id, renamed.name, renamed.run_dir) == (run.id, "rank 16, lr 2e-4",
                                                           run.run_dir)
    assert store.set_notes(run.id, " tried a higher rank ").notes == "tried a higher rank"
    assert store.set_tags(run.id, "sweep, baseline sweep").tags == ("baseline", "sweep")
    assert store.add_tags(run.id, ["best"]).tags == ("baseline", "best", "sweep")
    assert store.remove_tags(run.id, "sweep").tags == ("baseline", "best")
    assert store.get(run.id).tags == ("baseline", "best")  # read back from the database
    with pytest.raises(LabelError, match="1 to 100 characters"):
        store.rename(run.id, "   ")
    with pytest.raises(LabelError, match="no spaces"):
        store.set_tags(run.id, ["ok", "semi;colon"])
    assert store.get(run.id).tags == ("baseline", "best")  # a refused change wrote nothing


def test_the_list_filters_by_status_tag_and_model(store, tmp_path):
    a = store.create_run(fake_recipe(name="a"))
    b = store.create_run(fake_recipe("model.source=gemma2-2b", name="b"))
    c = store.create_run(fake_recipe(name="c"))
    store.request_cancel(c.id)
    store.set_tags(a.id, ["x", "y"])
    store.set_tags(b.id, ["y"])
    ids = lambda **kw: sorted(r.id for r in store.list_runs(**kw))
    assert ids(tag="y") == sorted([a.id, b.id]) and ids(tag="x") == [a.id]
    assert ids(model="GEMMA2") == [b.id]
    assert ids(model=a.model) == sorted([a.id, c.id])
    assert ids(status=st.CANCELLED) == [c.id]
    assert ids(status=st.QUEUED, tag="y", model="gemma2") == [b.id]
    assert ids(tag="x%") == [] and ids(model="%") == []  # no wildcards
    assert store.tags_in_use() == ["x", "y"]
    assert store.models_in_use() == sorted({a.model, "gemma2-2b"})


def test_delete_removes_only_the_run_s_own_folder(store, tmp_path):
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "data.txt").write_text("mine")
    run = store.create_run(fake_recipe())
    folder = store.folder(run.id).path
    os.symlink(outside / "keep", folder / "link")  # a link inside the folder
    store.request_cancel(run.id)
    store.update_run(run.id, run_dir=str(outside))  # a recorded folder elsewhere
    store.delete(run.id)
    assert not folder.exists()
    assert (outside / "keep" / "data.txt").read_text() == "mine"
    with pytest.raises(RunNotFound):
        store.get(run.id)


def test_delete_of_a_folder_that_is_a_link_keeps_what_it_points_to(store, tmp_path):
    run = store.create_run(fake_recipe())
    store.request_cancel(run.id)
    folder = store.folder(run.id).path
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)
    os.symlink(elsewhere, folder)
    store.delete(run.id)
    assert (elsewhere / "recipe.yaml").is_file()


def test_delete_run_refuses_an_active_run_unless_asked_to_cancel_it(store):
    queued = store.create_run(fake_recipe())
    with pytest.raises(RunStateError, match="--cancel to cancel and then delete"):
        delete_run(queued.id, store)
    assert store.get(queued.id).status == st.QUEUED and store.folder(queued.id).path.exists()
    assert delete_run(queued.id, store, cancel=True).status == st.CANCELLED
    assert store.list_runs() == [] and not store.folder(queued.id).path.exists()


def test_a_running_run_is_cancelled_then_deleted(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.2")
    run = submit(fake_recipe("train.max_steps=200"), store, trainer=FAKE)
    wait_for(lambda: store.get(run.id).step >= 1, what="a step")
    before = delete_run(run.id, store, cancel=True, wait_s=60)
    assert before.status == st.CANCELLED  # stopped by the cancel, not killed
    assert store.list_runs() == [] and not store.folder(run.id).path.exists()
