"""The training loop on a tiny random Gemma 3: learning, evaluation, exact resume, failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gemma_panel.training import TrainingError, train
from gemma_panel.training.checkpoint import latest_checkpoint, list_checkpoints
from tests.training.resume import stopped_and_resumed


class Recorder:
    """A sink that keeps everything it is told."""

    def __init__(self):
        self.metrics, self.samples, self.checkpoints, self.end = [], [], [], None
        self.start = None

    def on_start(self, info): self.start = info
    def on_metrics(self, step, tokens, metrics): self.metrics.append((step, tokens, metrics))
    def on_samples(self, step, samples): self.samples.append((step, samples))
    def on_checkpoint(self, step, path, best): self.checkpoints.append((step, best))
    def on_log(self, message): pass
    def on_end(self, status, message): self.end = (status, message)

    def series(self, name):
        return [(s, m[name]) for s, _, m in self.metrics if name in m]


def trained_weights(result):
    return [np.asarray(v.value) for v in result.model.backbone.trainable_variables]


def test_a_run_learns_evaluates_and_checkpoints(tiny_recipe, tmp_path):
    sink = Recorder()
    result = train(tiny_recipe("train.max_steps=30", "eval.every_steps=10"), tmp_path, sink)
    assert result.status == "succeeded" and result.step == 30 and sink.end[0] == "succeeded"
    losses = [v for _, v in sink.series("loss")]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    val = sink.series("val_loss")
    assert [s for s, _ in val] == [0, 10, 20, 30] and val[-1][1] < val[0][1]
    last = sink.metrics[-1][2]
    assert last["val_perplexity"] == pytest.approx(math.exp(last["val_loss"]), rel=1e-6)
    assert 0 <= last["val_token_accuracy"] <= 1 and "token_f1" in last
    step, samples = sink.samples[-1]
    assert step == 30 and len(samples) == 2
    assert set(samples[0]) == {"prompt", "reference", "base", "tuned"}
    assert samples[0]["prompt"].startswith("<start_of_turn>user\n")
    tokens = [t for _, t, m in sink.metrics if "loss" in m]
    assert tokens == sorted(tokens) and tokens[0] > 0
    assert latest_checkpoint(tmp_path).name == "step-000030"
    assert (tmp_path / "recipe.yaml").is_file() and (tmp_path / "base_samples.json").is_file()


def test_cancel_then_resume_ends_exactly_like_an_uninterrupted_run(tiny_recipe, tmp_path):
    recipe = tiny_recipe("lora.dropout=0.1")  # dropout makes the RNG part of the state
    straight, resumed = stopped_and_resumed(recipe, tmp_path)
    for a, b in zip(trained_weights(straight), trained_weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(np.abs(a).max() > 0 for a in trained_weights(resumed))


def test_early_stopping_keeps_the_best_checkpoint(tiny_recipe, tmp_path):
    sink = Recorder()
    recipe = tiny_recipe("train.max_steps=12", "train.learning_rate=1e-9",
                         "eval.every_steps=2", "eval.early_stopping_patience=2")
    result = train(recipe, tmp_path, sink)
    assert result.status == "stopped_early" and result.step == 6
    assert sink.end[0] == "stopped_early" and "best checkpoint is step 2" in sink.end[1]
    assert "step-000002" in [p.name for p in list_checkpoints(tmp_path)]
    meta = json.loads((latest_checkpoint(tmp_path) / "meta.json").read_text())
    assert meta["best_step"] == 2



def test_a_resumed_run_stops_early_where_the_uninterrupted_run_does(tiny_recipe, tmp_path):
    """The best loss, its step and the evaluations since it are restored, not only the step."""
    recipe = tiny_recipe("train.max_steps=12", "train.learning_rate=1e-9",
                         "eval.every_steps=2", "eval.early_stopping_patience=2")
    straight = train(recipe, tmp_path / "straight")
    calls = {"n": 0}

    def stop_after_five():  # after the evaluation at step 4, which did not improve
        calls["n"] += 1
        return calls["n"] >= 5

    first = train(recipe, tmp_path / "stopped", should_stop=stop_after_five)
    assert (first.status, first.step) == ("cancelled", 5)
    sink = Recorder()
    resumed = train(recipe, tmp_path / "stopped", sink, resume=True)
    assert sink.start["start_step"] == 5
    assert (resumed.status, resumed.step) == (straight.status, straight.step)
    assert (resumed.status, resumed.step) == ("stopped_early", 6)
    assert resumed.best_val_loss == pytest.approx(straight.best_val_loss, rel=1e-6)
    assert "best checkpoint is step 2" in sink.end[1]

def test_a_nan_loss_stops_with_advice(tiny_recipe, tmp_path, monkeypatch):
    from gemma_panel.training import step as step_module

    original = step_module.TrainFunctions._train_step

    def poisoned(self, trainable, opt_state, frozen, batch, key):
        trainable, opt_state, metrics = original(self, trainable, opt_state, frozen, batch, key)
        return trainable, opt_state, {**metrics, "loss": metrics["loss"] * np.nan}

    monkeypatch.setattr(step_module.TrainFunctions, "_train_step", poisoned)
    sink = Recorder()
    with pytest.raises(TrainingError, match="learning_rate"):
        train(tiny_recipe(), tmp_path, sink)
    assert sink.end[0] == "failed" and "nan" in sink.end[1]


def test_unusable_data_is_a_training_error_in_words(tiny_recipe, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "respo\n')
    with pytest.raises(TrainingError, match="line 2"):
        train(tiny_recipe(f"data.train_path={bad}"), tmp_path / "run")
