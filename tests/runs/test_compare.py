"""The comparison API: curves by step or tokens, resumed attempts, table, settings, samples."""

from __future__ import annotations

from gemma_panel.runs import StoreSink, compare_runs, curves
from gemma_panel.runs import statuses as st
from tests.runs.conftest import fake_recipe


def _run(store, *overrides, losses, tokens_per_step=100, name="cmp"):
    run = store.create_run(fake_recipe(*overrides, name=name))
    sink = StoreSink(store, run.id)
    for step, loss in enumerate(losses, start=1):
        sink.on_metrics(step, step * tokens_per_step, {"loss": loss})
    sink.on_metrics(len(losses), len(losses) * tokens_per_step, {"val_loss": min(losses) + 1})
    sink.on_samples(1, [{"prompt": "q1", "reference": "r1", "base": "b1", "tuned": "old"}])
    sink.on_samples(len(losses), [{"prompt": "q1", "reference": "r1", "base": "b1",
                                   "tuned": f"{name} says 1"},
                                  {"prompt": "q2", "reference": "r2", "base": "b2",
                                   "tuned": f"{name} says 2"}])
    sink.close()
    return run


def test_curves_align_by_step_or_by_tokens(store):
    a = _run(store, losses=[3.0, 2.0, 1.5], tokens_per_step=100, name="a")
    b = _run(store, "train.learning_rate=0.0001", losses=[3.0, 2.5], tokens_per_step=250,
             name="b")
    by_step = compare_runs(store, [a.id, b.id])
    assert by_step.curves["loss"][a.id] == ([1, 2, 3], [3.0, 2.0, 1.5])
    assert by_step.curves["loss"][b.id] == ([1, 2], [3.0, 2.5])
    by_tokens = compare_runs(store, [a.id, b.id], x="tokens")
    assert by_tokens.curves["loss"][b.id][0] == [250, 500]
    assert by_tokens.curves["val_loss"][a.id] == ([300], [2.5])


def test_table_has_final_and_best_values(store):
    a = _run(store, losses=[3.0, 1.0, 2.0], name="a")
    (row,) = compare_runs(store, [a.id]).table
    assert row["final loss"] == 2.0 and row["best loss"] == 1.0
    assert (row["run"], row["step"], row["tokens"]) == (a.id, 3, 300)


def test_recipe_fields_that_differ_are_listed_for_every_run(store):
    a = _run(store, losses=[1.0], name="a")
    b = _run(store, "train.learning_rate=0.0001", losses=[1.0], name="b")
    c = _run(store, "lora.rank=4", losses=[1.0], name="c")
    fields = compare_runs(store, [a.id, b.id, c.id]).recipe_fields
    assert fields["train.learning_rate"] == {a.id: 2e-4, b.id: 1e-4, c.id: 2e-4}
    assert fields["lora.rank"] == {a.id: 8, b.id: 8, c.id: 4}
    assert fields["name"] == {a.id: "a", b.id: "b", c.id: "c"}
    assert "train.batch_size" not in fields


def test_samples_side_by_side_from_each_runs_latest_evaluation(store):
    a = _run(store, losses=[1.0, 0.5], name="a")
    b = _run(store, losses=[1.0, 0.5, 0.2], name="b")
    samples = compare_runs(store, [a.id, b.id]).samples
    assert [s["prompt"] for s in samples] == ["q1", "q2"]
    assert samples[0]["tuned"] == {a.id: "a says 1", b.id: "b says 1"}
    assert samples[0]["step"] == {a.id: 2, b.id: 3} and samples[0]["base"] == "b1"


def test_a_resumed_run_shows_the_resumed_trajectory_only(store):
    run = store.create_run(fake_recipe())
    first = StoreSink(store, run.id, attempt=0)
    for step in range(1, 8):  # reached step 7, last checkpoint at 4, then lost
        first.on_metrics(step, step * 10, {"loss": 100.0 + step})
    first.close()
    store.update_run(run.id, status=st.LOST)
    store.requeue(run.id)  # attempt 1 is now the run's; attempt 0 may no longer write
    second = StoreSink(store, run.id, attempt=1)
    for step in range(5, 10):
        second.on_metrics(step, step * 10, {"loss": float(step)})
    second.close()
    xs, ys = curves(store, run.id)["loss"]
    assert xs == list(range(1, 10))
    assert ys == [101.0, 102.0, 103.0, 104.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert len(store.metrics(run.id)) == 12  # the history itself is kept


def test_text_report_names_runs_settings_and_samples(store):
    a = _run(store, losses=[1.0], name="a")
    b = _run(store, "train.learning_rate=0.0001", losses=[0.5], name="b")
    text = compare_runs(store, [a.id, b.id]).to_text()
    assert "final loss" in text and "train.learning_rate" in text
    assert f"{b.id} (step 1): 'b says 1'" in text
