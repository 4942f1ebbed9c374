"""The quickstart recipe on the real Gemma 3 270M, shortened: it learns the dataset's style."""

from __future__ import annotations

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.evaluation import token_f1
from gemma_panel.training import train
from tests.training.test_trainer import Recorder

pytestmark = pytest.mark.slow
STEPS = 24


def test_quickstart_lowers_validation_loss_and_moves_answers_to_the_data(tmp_path):
    # 24 of the quickstart's 176 steps (~5,200 real tokens), its learning rate and schedule
    # over them; 40 steps took ~11 minutes of the suite on two shared cores.
    recipe = load_recipe("recipes/quickstart.yaml", [
        f"train.max_steps={STEPS}", f"eval.every_steps={STEPS}", "eval.num_samples=3",
        "eval.task_examples=0", "eval.max_new_tokens=32", f"train.checkpoint_every={STEPS}",
    ])
    sink = Recorder()
    result = train(recipe, tmp_path, sink)
    assert result.status == "succeeded"
    val = dict(sink.series("val_loss"))
    print(f"validation loss: base {val[0]:.3f} -> step {STEPS} {val[STEPS]:.3f}")
    assert val[STEPS] < 0.8 * val[0]
    _, samples = sink.samples[-1]
    refs = [s["reference"] for s in samples]
    base = token_f1([s["base"] for s in samples], refs)
    tuned = token_f1([s["tuned"] for s in samples], refs)
    print(f"token F1 against the references: base {base:.2f}, tuned {tuned:.2f}")
    assert tuned > base + 0.1
