"""View-models as plain objects, without a browser: data, configure, runs, compare."""

from __future__ import annotations

import json

import pytest

from gemma_panel.config import field_help, iter_fields, load_recipe
from gemma_panel.ui import CompareModel, ConfigModel, DataModel, Jobs, MetricFeed, RunsModel
from gemma_panel.ui.data_model import NONE
from tests.ui.conftest import (
    FAKE,
    TOPICS,
    UNIT_CONVERSIONS,
    fake_recipe,
    recorded_run,
    wait_finished,
    wait_for,
)

# -- jobs ----------------------------------------------------------------------------------


def test_jobs_apply_results_only_when_polled_and_route_errors():
    jobs, seen = Jobs(), []
    futures = [jobs.submit("ok", lambda: 41 + 1, seen.append),
               jobs.submit("bad", lambda: 1 / 0, seen.append,
                           on_error=lambda e: seen.append(type(e)))]
    for future in futures:
        future.exception(timeout=10)  # both have finished on the pool...
    assert seen == [] and jobs.running == ["ok", "bad"]  # ...but nothing applied before a poll
    jobs.wait()
    assert seen == [42, ZeroDivisionError]
    assert jobs.running == []


# -- data -----------------------------------------------------------------------------------


def test_data_model_checks_an_example_and_renders_the_trained_part():
    data = DataModel(model_source="")  # no model: tokens are not measured, and it says so
    data.load("no/such/file.jsonl")  # inside the data roots (outside: test_security)
    assert data.error == "no/such/file.jsonl: no such file on the server" and not data.path
    data.load(str(UNIT_CONVERSIONS))
    data.jobs.wait()
    assert data.report["rows_usable"] == 314 and data.report["ok"]
    assert data.mapping == {"prompt": "prompt", "response": "response"}
    assert len(data.preview) == 50 and set(data.preview[0]) == {"prompt", "response"}
    assert "choose a model" in data.status
    trained = "".join(t for t, on in data.rendered if on)
    untrained = "".join(t for t, on in data.rendered if not on)
    first = json.loads(UNIT_CONVERSIONS.read_text().splitlines()[0])
    assert trained == first["response"] + "<end_of_turn>"
    assert first["prompt"] in untrained and "<start_of_turn>model" in untrained


def test_data_model_report_filters_and_column_mapping(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMA_PANEL_DATA_ROOTS", str(tmp_path))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a?", "answer": "b", "extra": "x"}\n'
                   '{"question": "c?", "answer": ""}\n'
                   '{"question": "d?", "answer": "e"\n'
                   '{"question": "f?", "answer": "g", "extra": "y"}\n')
    data = DataModel(model_source="")
    data.load(str(bad))
    data.jobs.wait()
    codes = {k["code"] for k in data.problem_kinds()}
    assert {"broken_json", "empty_string"} <= codes
    assert data.report["n_errors"] >= 1 and not data.report["ok"]
    data.severity_filter = "error"
    assert data.problems() and all(p["severity"] == "error" for p in data.problems())
    data.severity_filter = "all"
    data.code_filter = "broken_json"
    assert [p["where"] for p in data.problems()] == ["line 3"]
    data.code_filter, data.text_filter = "all", "line 2"
    assert data.problems() and all("line 2" in p["where"] for p in data.problems())
    # Map the prompt to another column: the check runs again with the override.
    data.set_column("prompt", "extra")
    data.jobs.wait()
    assert data.mapping["prompt"] == "extra"
    data.set_column("input", NONE)
    data.jobs.wait()
    assert data.overrides == {"prompt": "extra", "input": None}


def test_data_model_upload_is_stored_sanitized_and_checked(gemma_panel_home):
    data = DataModel(model_source="")
    data.upload("../../etc/topics.csv", TOPICS.read_bytes())
    data.jobs.wait()
    assert data.path.startswith(str(gemma_panel_home / "uploads"))
    assert data.path.endswith("-topics.csv") and ".." not in data.path
    assert data.report["task"] == "classification" and data.report["rows_usable"] == 160
    data.upload("model.pkl", b"\x80\x04K\x01.")
    data.jobs.wait()
    assert "not a dataset file" in data.error and data.path.endswith("-topics.csv")
    assert not list((gemma_panel_home / "uploads").glob("*pkl*"))


def test_data_model_augmentation_preview_changes_prompts_only():
    data = DataModel(model_source="")
    data.load(str(UNIT_CONVERSIONS))
    data.jobs.wait()
    data.augment_copies = 2
    data.preview_augmentation()
    data.jobs.wait()
    assert len(data.augmented) == 10  # 5 rows x 2 copies
    assert all(r["original"] != r["variant"] for r in data.augmented)
    assert {r["operation"] for r in data.augmented} <= {"swap", "delete"}


def test_data_model_measures_tokens_with_the_models_tokenizer(tiny_gguf):
    data = DataModel(model_source=str(tiny_gguf), sequence_length=32)
    data.load(str(UNIT_CONVERSIONS))
    data.jobs.wait(timeout=120)
    stats = data.token_stats
    assert stats["examples"] == 314 and stats["sequence_length"] == 32
    assert sum(stats["total"]["histogram"]["counts"]) == 314
    assert stats["truncated_examples"] > 0  # 32 tokens cut some of the longer rows
    # Cut where the run cuts: 32 positions hold 33 tokens (the last input's target too).
    assert data.rendered_by_token and len(data.rendered) == 33
    data.sequence_length = 512
    data.jobs.wait(timeout=120)
    assert data.token_stats["truncated_examples"] == 0
    trained = [t for t, on in data.rendered if on]
    assert trained and trained[-1] == "<end_of_turn>"  # the stop token is trained
    assert data.rendered[0] == ("<bos>", False)


# -- configure ------------------------------------------------------------------------------


def test_config_model_has_every_field_with_the_schemas_help():
    from gemma_panel.ui.config_model import field_info

    cfg = ConfigModel()
    paths = [f"{s}.{f.name}" for s, f, _ in iter_fields()]
    assert set(paths) <= set(cfg.settings)
    for path in paths:
        assert field_info(path)["help"] == field_help(path)
    assert field_info("train.schedule")["choices"] == ("cosine", "linear", "constant")
    assert field_info("train.max_steps")["optional"]


def test_config_model_checks_edits_and_shows_the_cli_command(tmp_path):
    cfg = ConfigModel()
    assert cfg.errors == [] and cfg.cli_command.startswith("gemma-panel run ")
    cfg.set("train.learning_rate", 0.5)
    assert any(e.startswith("train.learning_rate") for e in cfg.errors)
    cfg.set("train.learning_rate", 1e-4)
    cfg.set("lora.rank", 16)
    cfg.set("train.max_steps", "30")       # optional field from a text box
    cfg.set("eval.sample_prompts", "Convert 1 km to miles., Convert 2 kg to lb.")
    assert cfg.errors == []
    assert "train.learning_rate=0.0001" in cfg.cli_command and "lora.rank=16" in cfg.cli_command
    recipe = cfg.recipe()
    assert (recipe.train.max_steps, recipe.lora.rank) == (30, 16)
    assert recipe.eval.sample_prompts == ["Convert 1 km to miles.", "Convert 2 kg to lb."]
    # The command, run through the CLI's own parser, gives the same recipe.
    base, *overrides = cfg.cli_command.split(" ", 3)[2:]
    import shlex

    again = load_recipe(base, shlex.split(overrides[0]) if overrides else [])
    assert again.to_dict() == recipe.to_dict()
    path = cfg.save("edited.yaml")  # recipes are saved only in GEMMA_PANEL_HOME/recipes
    assert cfg.cli_command == f"gemma-panel run {path}"
    other = ConfigModel(base_path=None)
    other.load(path)
    assert other.recipe().to_dict() == recipe.to_dict()


def test_config_model_from_a_recipe_without_a_file_gives_a_command_that_works(tmp_path):
    import shlex

    recipe = load_recipe(None, ["name=mine", "train.epochs=2", "lora.target_layers=[query, key]"])
    cfg = ConfigModel(recipe)
    command = shlex.split(cfg.cli_command)
    assert command[:3] == ["gemma-panel", "run", "EMPTY.yaml"] and "EMPTY.yaml" in cfg.cli_note
    empty = tmp_path / "EMPTY.yaml"
    empty.write_text("")
    assert load_recipe(empty, command[3:]).to_dict() == recipe.to_dict()


def test_config_model_picker_and_bad_yaml():
    cfg = ConfigModel()
    cfg.model_choice = "gemma3-1b"
    assert cfg.settings["model.source"] == "gemma3-1b"
    assert "GiB" in cfg.model_info()["weights (float32)"]
    cfg.set("model.source", "/tmp/some.gguf")
    assert cfg.model_choice == "(a file, folder or preset)" and cfg.model_info() == {}
    cfg.load_text("train:\n  learning_rat: 1\n", "typo.yaml")
    assert any("did you mean 'learning_rate'" in e for e in cfg.errors)
    assert cfg.settings["model.source"] == "/tmp/some.gguf"  # nothing replaced


# -- runs ------------------------------------------------------------------------------------


def test_metric_feed_gives_history_then_only_new_points_then_redraws_after_resume(store):
    run = recorded_run(store, "feed", 1e-4, steps=5)
    feed = MetricFeed(store, run.id)
    kind, series = feed.poll()
    assert kind == "reset" and series["loss"]["step"] == [1, 2, 3, 4, 5]
    assert series["perplexity"]["value"][0] == pytest.approx(2.718281828 ** 4)
    assert series["val_loss"]["value"] == [2.5]
    assert feed.poll() == ("append", {k: {c: [] for c in v} for k, v in series.items()})
    store.add_metrics(run.id, 0, 6, 600, {"loss": 0.5})
    kind, series = feed.poll()
    assert kind == "append" and series["loss"]["step"] == [6]
    assert series["loss"]["time"][0] > 0
    store.update_run(run.id, status="lost")
    store.requeue(run.id)  # attempt 1: the store refuses attempt 0's writes from now on
    store.add_metrics(run.id, 1, 4, 400, {"loss": 0.9})  # a resume from step 3
    kind, series = feed.poll()
    assert kind == "reset" and series["loss"]["step"] == [1, 2, 3, 4]
    assert series["loss"]["value"][-1] == 0.9


def test_runs_model_starts_cancels_resumes_and_reattaches(store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.1")
    runs = RunsModel(store, trainer=FAKE)
    assert runs.selected is None
    runs.start(fake_recipe("train.max_steps=400", name="ui"))
    runs.jobs.wait()
    run_id = runs.selected
    assert run_id.startswith("ui-") and runs.status in ("queued", "running")
    wait_for(lambda: store.get(run_id).step >= 3, timeout=60, what="three steps")
    runs.refresh_status()
    assert runs.status == "running" and runs.can_cancel and not runs.can_resume
    runs.cancel()
    assert "Cancel requested" in runs.notice or "Cancelled" in runs.notice
    wait_finished(store, run_id)
    runs.refresh_status()
    assert runs.status == "cancelled" and runs.can_resume and "checkpoint saved" in runs.message
    # A second page (or a restarted server) finds the run and its whole history.
    again = RunsModel(store, trainer=FAKE)
    assert again.selected == run_id
    kind, series = again.feed.poll()
    stored = [p.step for p in store.metrics(run_id, names=["loss"])]
    assert kind == "reset" and series["loss"]["step"] == stored
    again.resume()
    again.jobs.wait()
    assert store.get(run_id).attempt == 1 and "Resuming" in again.notice
    again.cancel()
    wait_finished(store, run_id)


def test_runs_model_shows_failure_cause_and_samples(store):
    runs = RunsModel(store, trainer=FAKE)
    runs.start(fake_recipe(name="raise"))
    runs.jobs.wait()
    wait_finished(store, runs.selected)
    runs.refresh_status()
    assert runs.status == "failed" and "lower train.learning_rate" in runs.message
    # The page shows the worker's log tail as the store recorded it, cause included.
    assert runs.log_tail == store.get(runs.selected).log_tail
    assert "the loss became nan at step 3" in runs.log_tail
    ok = RunsModel(store, trainer=FAKE)
    ok.start(fake_recipe(name="fine"))
    ok.jobs.wait()
    wait_finished(store, ok.selected)
    ok.refresh_status()
    assert ok.status == "succeeded" and ok.eta_text.startswith("took")
    assert [s["step"] for s in ok.samples] == [5, 10]
    assert ok.samples[0]["base"] == "5" and ok.samples[1]["tuned"] == "4 at 10"


# -- compare ---------------------------------------------------------------------------------


def test_compare_model_overlays_runs_and_lists_differences(store):
    a = recorded_run(store, "lr-high", 3e-4)
    b = recorded_run(store, "lr-low", 1e-4, steps=4)
    cmp = CompareModel(store)
    assert set(cmp.param.chosen.objects) == {a.id, b.id}
    cmp.chosen = [a.id, b.id]
    assert set(cmp.curves["loss"]) == {a.id, b.id}
    assert cmp.curves["loss"][b.id][0] == [1, 2, 3, 4]
    fields = {row["field"]: row for row in cmp.fields}
    assert fields["train.learning_rate"][a.id] == 3e-4
    assert fields["train.learning_rate"][b.id] == 1e-4
    assert [row["run"] for row in cmp.table] == [a.id, b.id]
    assert cmp.table[1]["final loss"] == 1.0
    assert cmp.samples[0][a.id] == "lr-high" and cmp.samples[0][b.id] == "lr-low"
    cmp.x = "tokens"
    assert cmp.curves["loss"][a.id][0][:2] == [100, 200]
    cmp.chosen = []
    assert cmp.curves == {} and "Pick" in cmp.message


def test_compare_view_tables_show_a_row_per_run_picked_one_after_the_other(store):
    from gemma_panel.ui.compare_view import CompareView

    a = recorded_run(store, "lr-high", 3e-4)
    b = recorded_run(store, "lr-low", 1e-4, steps=4)
    cmp = CompareModel(store)
    view = CompareView(model=cmp)
    cmp.chosen = [a.id]
    cmp.chosen = [a.id, b.id]
    shown = view.table.object
    assert list(shown["run"]) == [a.id, b.id] and list(shown["final loss"]) == [0.666667, 1.0]
    import html as html_lib

    html = html_lib.unescape(view.table.get_root().text)
    assert html.count("<tr") == 3 and a.id in html and b.id in html  # header and two rows
    assert list(view.fields.object["field"]) == ["name", "train.learning_rate"]
    cmp.x = "tokens"
    assert len(view.table.object) == 2


# -- the Data tab's verdict is the run's verdict -----------------------------------------------


def test_data_model_carries_the_detected_template_and_its_verdict_is_preflights():
    from gemma_panel.data.preflight import preflight

    quickstart = load_recipe("recipes/quickstart.yaml")  # template: gemma
    data = DataModel(model_source="", recipe=quickstart, template="gemma")
    data.load(str(TOPICS))
    data.jobs.wait()
    # The classification file brings the template it needs; the run would pass.
    assert data.template == "classification" and "Template set to classification" in data.status
    assert data.verdict["ok"] and data.verdict["template"] == "classification"
    assert data.verdict == preflight(data.run_recipe()).to_dict()
    # Without a tokenizer nothing says "ready to train": token lengths are unchecked.
    assert not data.verdict["ready"] and "ready to train" not in data.status.lower()
    # The user puts the chat template back: the tab says the run would fail, and why.
    data.template = "gemma"
    data.jobs.wait()
    assert data.report["ok"]  # the file itself is clean ...
    assert not data.verdict["ok"]  # ... but not for this template
    assert "Template set" not in data.status  # the user chose otherwise since
    assert "NOT ready to train" in data.status and "set data.template to classification" \
        in data.status
    assert data.verdict["fix"] == {"data.template": "classification"}


def test_data_model_says_ready_only_after_token_lengths_pass(tiny_gguf, tmp_path):
    data = DataModel(model_source=str(tiny_gguf), sequence_length=128, template="auto")
    data.load(str(TOPICS))
    data.jobs.wait(timeout=120)
    assert data.verdict["ready"] and "Ready to train" in data.status
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "word " * 200, "response": "ok"}) + "\n"
                    + json.dumps({"prompt": "short", "response": "fine"}) + "\n")
    data.sequence_length = 16
    data.load(str(long))
    data.jobs.wait(timeout=120)
    assert data.report["ok"]  # the file's own check has no tokenizer ...
    assert not data.verdict["ok"] and data.verdict["tokens_checked"]  # ... the run's has
    assert "NOT ready to train" in data.status and "sequence length" in data.status


def test_config_model_checks_the_data_and_offers_the_fix():
    cfg = ConfigModel()  # the quickstart: template gemma
    cfg.jobs.wait()
    assert cfg.data_verdict["ok"]
    cfg.set("data.train_path", str(TOPICS))
    assert cfg.errors == []  # the recipe's fields are valid ...
    cfg.jobs.wait()
    verdict = cfg.data_verdict  # ... its data step is not
    assert not verdict["ok"] and verdict["fix"] == {"data.template": "classification"}
    assert "topics.csv is classification data" in verdict["message"]
    cfg.apply_fix()
    cfg.jobs.wait()
    assert cfg.settings["data.template"] == "classification" and cfg.data_verdict["ok"]


def test_runs_model_start_refuses_a_recipe_whose_data_would_fail(store):
    runs = RunsModel(store, trainer=FAKE)
    bad = fake_recipe(f"data.train_path={TOPICS}", "data.template=gemma", name="topics")
    runs.start(bad)
    runs.jobs.wait()
    assert store.list_runs() == [] and runs.selected is None
    assert runs.notice.startswith("Not started: NOT ready to train: topics.csv is "
                                  "classification data")
    runs.start(fake_recipe(f"data.train_path={TOPICS}", "data.template=classification",
                           name="topics"))
    runs.jobs.wait()
    assert runs.selected is not None and runs.selected.startswith("topics-")
    wait_finished(store, runs.selected)


def test_studio_dataset_choice_reaches_the_recipe_start_and_the_verdicts(store):
    from gemma_panel.ui import Studio

    studio = Studio(store, trainer=FAKE)
    studio.config.set("model.source", "")
    studio.jobs.wait()
    studio.data.load(str(TOPICS))
    studio.jobs.wait()
    recipe = studio.config.recipe()
    assert (recipe.data.train_path, recipe.data.template) == (str(TOPICS), "classification")
    assert studio.config.data_verdict["ok"] and studio.data.verdict["ok"]
    assert studio.config.data_verdict["message"] == studio.data.verdict["message"]
