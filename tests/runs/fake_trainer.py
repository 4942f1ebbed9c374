"""A stand-in trainer with the real one's contract, for fast tests of the store, the queue
and the worker (the real trainer on a tiny Gemma runs in test_real_trainer.py).

It "trains" ``train.max_steps`` steps of ``FAKE_STEP_S`` seconds (environment, default 0.05),
checkpointing every ``train.checkpoint_every`` steps as JSON, honouring ``should_stop`` and
``resume`` as the real trainer does. ``recipe.name`` selects misbehaviour: "raise"
raises a TrainingError (a UserError) at step 3, "crash" raises a ZeroDivisionError.

``prepare_then_train`` first reads and prepares the recipe's data as the real trainer
does (without a model: no tokenizer), so data sources can be tested through the worker.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gemma_panel.errors import UserError


class TrainingError(UserError, RuntimeError):  # as gemma_panel.training.TrainingError
    pass


class Result:
    def __init__(self, status, step, message=None):
        self.status, self.step, self.message = status, step, message


def _latest(run_dir: Path):
    found = sorted((run_dir / "checkpoints").glob("step-*/meta.json"))
    return json.loads(found[-1].read_text()) if found else None


def train(recipe, run_dir, sink, should_stop=lambda: False, resume=False):
    run_dir = Path(run_dir)
    total = recipe.train.max_steps or 10
    delay = float(os.environ.get("FAKE_STEP_S", "0.05"))
    state = _latest(run_dir) if resume else None
    step, weight = (state["step"], state["weight"]) if state else (0, 0.0)
    sink.on_start({"total_steps": total, "start_step": step, "tokens_per_step": 8})

    def save():
        sink.on_checkpoint_start(step)  # as the real trainer: the store may refuse it
        folder = run_dir / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(json.dumps({"step": step, "weight": weight}))
        sink.on_checkpoint(step, str(folder), False)

    while step < total:
        time.sleep(delay)
        step += 1
        weight = weight * 0.9 + step  # deterministic "training"
        if recipe.name == "raise" and step == 3:
            raise TrainingError("the loss became nan at step 3: lower train.learning_rate")
        if recipe.name == "crash" and step == 3:
            raise ZeroDivisionError("division by zero")
        sink.on_metrics(step, step * 8, {"loss": 10.0 / step, "learning_rate": 1e-3})
        if step % 5 == 0:
            sink.on_samples(step, [{"prompt": "2+2?", "reference": "4", "base": "5",
                                    "tuned": f"4 at {step}"}])
        if step % recipe.train.checkpoint_every == 0:
            save()
        if should_stop():
            save()
            sink.on_end("cancelled", f"stopped at step {step} on request")
            return Result("cancelled", step, f"stopped at step {step} on request")
    save()
    sink.on_log(f"final weight {weight}")
    sink.on_end("succeeded", None)
    return Result("succeeded", step)


def prepare_then_train(recipe, run_dir, sink, should_stop=lambda: False, resume=False):
    from gemma_panel.data import DatasetError
    from gemma_panel.data.preflight import prepare_recipe_data
    from gemma_panel.training.trainer import TrainingError as RealTrainingError

    try:
        prepared = prepare_recipe_data(recipe)  # the worker's preparation, minus tokens
    except DatasetError as exc:
        raise RealTrainingError(f"the data cannot be used: {exc}") from exc
    sink.on_log(f"prepared {len(prepared.train)} train and {len(prepared.validation)} "
                f"validation examples ({prepared.mapping.task})")
    return train(recipe, run_dir, sink, should_stop, resume)
