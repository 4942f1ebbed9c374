"""``gemma-panel run`` / ``runs ...`` through their argparse registration (as cli.py will)."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from gemma_panel.cli import run_command
from gemma_panel.cli.runs import add_run_commands
from gemma_panel.runs import StoreSink
from gemma_panel.runs import statuses as st
from tests.runs.conftest import FAKE, fake_recipe, wait_finished, wait_for


@pytest.fixture
def cli(store, monkeypatch, capsys):
    """Run a command line against the test store; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("GEMMA_PANEL_HOME", str(store.root))
    parser = argparse.ArgumentParser(prog="gemma-panel")
    add_run_commands(parser.add_subparsers(dest="command", required=True))

    def call(*argv: str):
        capsys.readouterr()
        code = run_command(parser.parse_args(list(argv)))  # with the CLI's error boundary
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: clitest\ntrain:\n  max_steps: 6\n  warmup_steps: 1\n"
                    "  checkpoint_every: 2\n")
    return path


def test_every_command_is_registered_with_a_function():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_run_commands(sub)
    for argv in (["run", "r.yaml", "train.epochs=2", "--detach"], ["runs", "list"],
                 ["runs", "show", "x"], ["runs", "logs", "x", "-f"], ["runs", "cancel", "x"],
                 ["runs", "resume", "x"], ["runs", "delete", "x", "--yes"],
                 ["runs", "compare", "x", "y", "--by", "tokens"], ["worker", "x"]):
        assert callable(parser.parse_args(argv).func)


def test_run_follows_the_run_and_exits_with_its_status(cli, recipe_file, store):
    code, out, _ = cli("run", str(recipe_file), "train.max_steps=5", "--trainer", FAKE)
    assert code == 0
    assert "queued" in out and "step     5/5 | loss 2.0000" in out and ": succeeded" in out
    (run,) = store.list_runs()
    assert run.status == st.SUCCEEDED and run.total_steps == 5


def test_follow_prints_each_evaluation_s_samples_once(cli, recipe_file):
    code, out, _ = cli("run", str(recipe_file), "train.max_steps=10", "--trainer", FAKE)
    assert code == 0
    blocks = [f"  samples at step {step}:\n    prompt: 2+2?\n    base  : 5\n"
              f"    tuned : 4 at {step}\n    ref   : 4\n" for step in (5, 10)]
    assert out.count("samples at step") == 2
    assert blocks[0] in out and blocks[1] in out
    assert out.index(blocks[0]) < out.index("step    10/10") < out.index(blocks[1])


def test_a_failed_run_exits_1_with_the_cause_and_the_log_tail(cli, recipe_file):
    code, out, _ = cli("run", str(recipe_file), "name=raise", "--trainer", FAKE)
    assert code == 1
    assert "failed: the loss became nan at step 3" in out
    assert "last lines of the log" in out and "resume with" in out


def test_detach_returns_at_once_then_list_show_logs(cli, recipe_file, store):
    code, out, _ = cli("run", str(recipe_file), "--detach", "--trainer", FAKE)
    assert code == 0 and "runs logs" in out
    run_id = out.split()[1]
    wait_finished(store, run_id)
    code, out, _ = cli("runs", "list")
    assert code == 0 and run_id in out and "succeeded" in out and "6/6" in out
    code, out, _ = cli("runs", "show", run_id[:9])
    assert code == 0 and "status   succeeded" in out and "checkpoint step 6" in out
    code, out, _ = cli("runs", "show", run_id, "--json")
    assert json.loads(out)["latest_metrics"]["loss"] == pytest.approx(10 / 6)
    code, out, _ = cli("runs", "logs", run_id, "-n", "2")
    assert code == 0 and out.splitlines()[-1] == f"worker: run {run_id} succeeded"


def test_unknown_run_and_bad_recipe_are_usage_errors(cli, recipe_file):
    code, _, err = cli("runs", "show", "nope")
    assert code == 2 and "no run with id 'nope'" in err
    code, _, err = cli("run", str(recipe_file), "train.batch_size=0")
    assert code == 2 and "train.batch_size: must be at least 1" in err


def test_cancel_and_resume_from_the_command_line(cli, store, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.2")
    from gemma_panel.runs import submit

    run = submit(fake_recipe("train.max_steps=40"), store, trainer=FAKE)
    code, out, _ = cli("runs", "resume", run.id)
    assert code == 2  # a queued run cannot be resumed
    wait_for(lambda: store.get(run.id).step >= 1, what="a step")
    code, out, _ = cli("runs", "cancel", run.id, "--wait")
    assert code == 0 and out.splitlines()[-1] == f"{run.id}: cancelled"
    monkeypatch.setenv("FAKE_STEP_S", "0.01")
    code, out, _ = cli("runs", "resume", run.id)
    assert code == 0 and "attempt 2" in out and ": succeeded" in out
    assert "continues from step" in out
    code, out, _ = cli("runs", "cancel", run.id)
    assert code == 0 and "nothing to cancel" in out


def test_cancel_of_a_queued_run_says_so(cli, store):
    run = store.create_run(fake_recipe())
    code, out, _ = cli("runs", "cancel", run.id)
    assert code == 0 and "cancelled before it started" in out
    assert store.get(run.id).status == st.CANCELLED


def test_delete_asks_first_and_is_the_only_way_data_goes(cli, store, monkeypatch):
    run = store.create_run(fake_recipe())
    store.request_cancel(run.id)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, out, _ = cli("runs", "delete", run.id)
    assert code == 1 and "nothing deleted" in out and store.folder(run.id).path.exists()
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    code, out, _ = cli("runs", "delete", run.id)
    assert code == 0 and not store.folder(run.id).path.exists()
    other = store.create_run(fake_recipe())
    store.request_cancel(other.id)
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked despite --yes"))
    assert cli("runs", "delete", other.id, "--yes")[0] == 0
    assert store.list_runs() == []


def test_compare_prints_a_table_and_json(cli, store):
    ids = []
    for lr in ("0.0002", "0.0001"):
        run = store.create_run(fake_recipe(f"train.learning_rate={lr}"))
        with StoreSink(store, run.id) as sink:
            sink.on_metrics(1, 64, {"loss": float(lr) * 1000})
        ids.append(run.id)
    code, out, _ = cli("runs", "compare", *ids)
    assert code == 0 and "train.learning_rate" in out and "final loss" in out
    code, out, _ = cli("runs", "compare", *ids, "--by", "tokens", "--json")
    data = json.loads(out)
    assert data["curves"]["loss"][ids[1]] == [[64], [0.1]]
    assert data["recipe_fields"]["train.learning_rate"] == {ids[0]: 2e-4, ids[1]: 1e-4}


def test_parallel_shows_and_sets_the_queue_width(cli, store):
    assert "1 run(s)" in cli("runs", "parallel")[1]
    assert cli("runs", "parallel", "2")[0] == 0 and store.max_parallel == 2
    assert cli("runs", "parallel", "0")[0] == 2


@pytest.mark.parametrize("source, words", [
    ("models/missing.gguf", "model.source: No model at 'models/missing.gguf'"),
    ("not-gguf.gguf", "is not a GGUF file (it does not start with the GGUF magic bytes)"),
])
def test_run_with_a_bad_model_source_exits_2_before_queueing(store, recipe_file, tmp_path,
                                                             monkeypatch, capsys, source, words):
    from gemma_panel.cli import main

    monkeypatch.setenv("GEMMA_PANEL_HOME", str(store.root))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-gguf.gguf").write_bytes(b"PK\x03\x04 a zip, not a model")
    capsys.readouterr()
    code = main(["run", str(recipe_file), f"model.source={source}", "--detach",
                 "--trainer", FAKE])
    out, err = capsys.readouterr()
    assert code == 2 and words in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "queued" not in out and store.list_runs() == []  # nothing queued, no worker


def test_resume_refuses_data_that_changed_since_the_checkpoint(store, tmp_path, monkeypatch,
                                                                capsys):
    from gemma_panel.cli import main
    from gemma_panel.runs.data_changes import check_data_unchanged

    monkeypatch.setenv("GEMMA_PANEL_HOME", str(store.root))
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n' * 20)
    run = store.create_run(fake_recipe(f"data.train_path={data}"), trainer=FAKE)
    store.update_run(run.id, status=st.CANCELLED, checkpoint_step=4)
    os.utime(data, (1, 1))  # touched, same bytes: still the same data
    assert check_data_unchanged(store, store.get(run.id)) is None
    data.write_text('{"prompt": "a", "response": "c"}\n' * 20)  # edited after the cancel
    capsys.readouterr()
    assert main(["runs", "resume", run.id, "--detach"]) == 2
    err = capsys.readouterr().err
    assert f"{data} changed" in err and "--accept-changed-data" in err
    assert len(err.strip().splitlines()) == 1
    after = store.get(run.id)
    assert (after.status, after.attempt) == (st.CANCELLED, 0)  # not queued
    assert main(["runs", "resume", run.id, "--detach", "--accept-changed-data"]) == 0
    assert f"resumed on changed data: {data} changed" in capsys.readouterr().out
    (event,) = store.events(run.id, kinds=["data_changed"])
    assert event.attempt == 1 and event.data["fingerprint"]["train_path"]["path"] == str(data)
    done = wait_finished(store, run.id)
    store.update_run(run.id, status=st.CANCELLED)  # the accepted data is now the baseline
    assert check_data_unchanged(store, done) is None
