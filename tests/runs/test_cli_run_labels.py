"""``gemma-panel runs rename | note | tag | list --status/--tag/--model | delete --cancel``."""

from __future__ import annotations

import pytest

from gemma_panel.runs import statuses as st
from gemma_panel.runs import submit
from tests.runs.conftest import FAKE, fake_recipe, wait_for
from tests.runs.test_cli_runs import cli  # noqa: F401  (the fixture)


def test_rename_note_tag_show_and_list_filters(cli, store):  # noqa: F811
    a = store.create_run(fake_recipe(name="a"))
    b = store.create_run(fake_recipe("model.source=gemma2-2b", name="b"))
    store.request_cancel(b.id)
    code, out, _ = cli("runs", "rename", a.id[:8], "rank", "16")
    assert code == 0 and store.get(a.id).name == "rank 16" and "'rank 16'" in out
    assert cli("runs", "note", a.id, "first try")[0] == 0
    assert cli("runs", "note", a.id, "loss flat", "--append")[0] == 0
    assert store.get(a.id).notes == "first try\nloss flat"
    code, out, _ = cli("runs", "tag", a.id, "sweep", "baseline")
    assert code == 0 and out.strip() == f"{a.id}: tags baseline, sweep"
    code, out, _ = cli("runs", "tag", a.id, "baseline", "--remove")
    assert store.get(a.id).tags == ("sweep",)
    code, out, _ = cli("runs", "show", a.id)
    assert "tags     sweep" in out and "notes    first try\n         loss flat" in out
    code, out, _ = cli("runs", "list", "--tag", "sweep")
    assert a.id in out and b.id not in out and "rank 16 [sweep]" in out
    code, out, _ = cli("runs", "list", "--model", "gemma2", "--status", "cancelled")
    assert b.id in out and a.id not in out
    code, out, _ = cli("runs", "list", "--tag", "nothing")
    assert code == 0 and "no runs match" in out


def test_bad_labels_are_usage_errors_in_one_sentence(cli, store):  # noqa: F811
    run = store.create_run(fake_recipe())
    code, _, err = cli("runs", "tag", run.id, "two words;")
    assert code == 2 and "no spaces" in err and "Traceback" not in err
    code, _, err = cli("runs", "rename", run.id, " ")
    assert code == 2 and "type another name" in err


def test_delete_refuses_an_active_run_then_cancels_it_with_cancel(cli, store, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FAKE_STEP_S", "0.2")
    run = submit(fake_recipe("train.max_steps=200"), store, trainer=FAKE)
    wait_for(lambda: store.get(run.id).step >= 1, what="a step")
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked for a refusal"))
    code, _, err = cli("runs", "delete", run.id)
    assert code == 2 and "add --cancel to cancel and then delete it" in err
    assert store.get(run.id).status == st.RUNNING and store.folder(run.id).path.exists()
    code, out, _ = cli("runs", "delete", run.id, "--cancel", "--yes")
    assert code == 0 and "cancelling" in out and f"deleted {run.id}" in out
    assert store.list_runs() == [] and not store.folder(run.id).path.exists()
