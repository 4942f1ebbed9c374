"""The quickstart recipe on the real Gemma 3 270M, shortened: it learns the dataset's style."""

from __future__ import annotations

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.evaluation import token_f1
from gemma_panel.training import train
from tests.training.test_trainer import Recorder

pytestmark = pytest.mark.slow


def test_quickstart_lowers_validation_loss_and_moves_answers_to_the_data(tmp_path):
    recipe = load_recipe("recipes/quickstart.yaml", [
        "train.max_steps=40", "eval.every_steps=40", "eval.num_samples=3",
        "eval.task_examples=0", "eval.max_new_tokens=32", "train.checkpoint_every=40",
    ])
    sink = Recorder()
    result = train(recipe, tmp_path, sink)
    assert result.status == "succeeded"
    val = dict(sink.series("val_loss"))
    print(f"validation loss: base {val[0]:.3f} -> step 40 {val[40]:.3f}")
    assert val[40] < 0.8 * val[0]
    _, samples = sink.samples[-1]
    refs = [s["reference"] for s in samples]
    base = token_f1([s["base"] for s in samples], refs)
    tuned = token_f1([s["tuned"] for s in samples], refs)
    print(f"token F1 against the references: base {base:.2f}, tuned {tuned:.2f}")
    assert tuned > base + 0.1
