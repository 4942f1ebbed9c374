"""``train``: one fine-tuning run, from a recipe to checkpoints, metrics and samples.

Read it top to bottom: load the model and the data, enable LoRA, lay the data into fixed
shape sequences, answer the sample prompts with the base model, then loop over optimizer
steps, evaluating, checkpointing and listening for a stop request. Everything it has to
say goes to the sink.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemma_panel.config import Recipe, recipe_to_yaml
from gemma_panel.errors import UserError
from gemma_panel.training.batches import batch_at, build_sequences, max_loss_tokens
from gemma_panel.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from gemma_panel.training.events import EventSink, NullSink, checkpoint_allowed


class TrainingError(UserError, RuntimeError):
    """A run that cannot go on, said in words with what to try next."""


@dataclass
class TrainResult:
    """How a run ended. ``model`` is the tuned causal LM (in-process callers only)."""

    status: str
    step: int
    message: str | None = None
    best_val_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    model: Any = None


def load_tuned_model(recipe: Recipe):
    """The recipe's model with LoRA enabled as configured (weights still the base's)."""
    import keras

    from gemma_panel.models import load_model

    keras.utils.set_random_seed(recipe.train.seed)
    lm = load_model(recipe.model.source, dtype=recipe.model.dtype, progress=False)
    backbone = lm.backbone
    if recipe.lora.enabled:
        backbone.enable_lora(recipe.lora.rank, target_layer_names=list(recipe.lora.target_layers))
        for layer in backbone._flatten_layers(include_self=False):
            if getattr(layer, "lora_enabled", False):
                layer.lora_alpha = recipe.lora.alpha
    else:
        backbone.trainable = True
    return lm


def prepare_data(recipe: Recipe, lm):
    """Read, check, split and tokenize the recipe's data with the model's tokenizer.

    The same preparation the dashboard's preflight runs (``gemma_panel.data.preflight``).
    """
    from gemma_panel.data import DatasetError, KerasHubTokenizer
    from gemma_panel.data.preflight import prepare_recipe_data

    try:
        return prepare_recipe_data(recipe, KerasHubTokenizer(lm.preprocessor.tokenizer))
    except DatasetError as exc:
        raise TrainingError(f"the data cannot be used: {exc}") from exc


def sample_items(prepared, recipe: Recipe) -> tuple[list[dict], list[dict]]:
    """(sample prompts to show, validation rows for task metrics), as prompt/reference.

    A prompt is what the model sees before its answer, as in training: the template's turn
    for chat and classification data (``eval.sample_prompts`` are put into it too), the
    opening words of a held-out text for plain text, whose continuation is the reference.
    """
    from gemma_panel.data import Example

    def split(example):
        segments = prepared.template.segments(example)
        first = next(i for i, s in enumerate(segments) if s.trained)
        prompt = "".join(s.text for s in segments[:first])
        if first == 0:  # plain text: show how the model continues its opening
            prompt, reference = _opening(segments[0].text)
            return {"prompt": prompt, "reference": reference}
        return {"prompt": prompt, "reference": segments[first].text}

    rows = [split(e) for e in prepared.validation]
    if not recipe.eval.sample_prompts:
        samples = rows[: recipe.eval.num_samples]
    elif prepared.mapping.task == "completion":
        samples = [{"prompt": p, "reference": ""} for p in recipe.eval.sample_prompts]
    else:
        samples = [{**split(Example(prompt=p, response="", label="")), "reference": ""}
                   for p in recipe.eval.sample_prompts]
    return samples, rows[: recipe.eval.task_examples]


_OPENING_WORDS = 12


def _opening(text: str) -> tuple[str, str]:
    """(the first words of a text, the rest): a sample prompt and its reference."""
    words = text.split(" ")
    cut = min(_OPENING_WORDS, max(1, len(words) // 4))
    return " ".join(words[:cut]), " " + " ".join(words[cut:])


def _answers(generator, items, max_new_tokens) -> list[str]:
    from gemma_panel.models.generation import SamplingOptions

    options = SamplingOptions(max_new_tokens=max_new_tokens)
    return generator.generate_many([item["prompt"] for item in items], options)


def _task_metrics(task: str, predictions, references) -> dict[str, float]:
    from gemma_panel.evaluation import accuracy, exact_match, macro_f1, token_f1

    if not references:
        return {}
    if task == "classification":
        return {"accuracy": accuracy(predictions, references),
                "macro_f1": macro_f1(predictions, references)}
    if task == "completion":
        return {}
    return {"exact_match": exact_match(predictions, references),
            "token_f1": token_f1(predictions, references)}


def train(
    recipe: Recipe,
    run_dir: str | os.PathLike,
    sink: EventSink | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Fine-tune as the recipe says; checkpoints and logs go under ``run_dir``.

    Args:
        recipe: a validated recipe (``load_recipe``).
        run_dir: the run's folder (created); holds recipe.yaml, checkpoints/, samples.
        sink: receives metrics, samples, checkpoints and the end status.
        should_stop: polled after every optimizer step; True saves a checkpoint and
            ends the run as ``cancelled``.
        resume: continue exactly from the last checkpoint in ``run_dir``.

    Raises:
        TrainingError: bad data, or a loss that became NaN/infinite (after on_end).
    """
    import jax

    from gemma_panel.models.generation import StreamingGenerator
    from gemma_panel.training.step import StepFunctions

    sink = sink or NullSink()
    should_stop = should_stop or (lambda: False)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe))
    t, e = recipe.train, recipe.eval

    lm = load_tuned_model(recipe)
    prepared = prepare_data(recipe, lm)
    length = recipe.data.sequence_length
    train_seq = build_sequences(prepared.train_tokens, length, recipe.data.pack, recipe.data.seed)
    val_seq = build_sequences(prepared.validation_tokens, length, recipe.data.pack,
                              recipe.data.seed)
    if e.max_examples is not None and len(val_seq) > e.max_examples:
        val_seq = val_seq.take(np.arange(e.max_examples))
    if len(train_seq) == 0:
        raise TrainingError("no training example has a token to learn; check the template "
                            "and data.sequence_length with 'gemma-panel data check'.")
    per_step = t.batch_size * t.gradient_accumulation
    total_steps = t.max_steps or max(1, math.ceil(t.epochs * len(train_seq) / per_step))
    steps = StepFunctions(lm, recipe, total_steps,
                          max_loss_tokens(train_seq, t.batch_size),
                          max_loss_tokens(val_seq, t.batch_size) if len(val_seq) else 128)
    trainable, opt_state, frozen = steps.initial_state()
    generator = StreamingGenerator(lm)
    samples, task_rows = sample_items(prepared, recipe)
    task = prepared.mapping.task

    start, tokens_seen, best, best_step, bad_evals = 0, 0, None, None, 0
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        sink.on_log("no checkpoint to resume from: starting from step 0")
    if checkpoint is not None:
        trainable, opt_state, meta = load_checkpoint(checkpoint, trainable, opt_state)
        start, tokens_seen = meta["step"], meta["tokens_seen"]
        best, best_step, bad_evals = meta["best_val_loss"], meta["best_step"], meta["bad_evals"]

    base_path = run_dir / "base_samples.json"
    if base_path.is_file():
        base_answers = json.loads(base_path.read_text())
    else:  # the base model answers before any update (LoRA's B starts at zero)
        base_answers = _answers(generator, samples, e.max_new_tokens)
        base_path.write_text(json.dumps(base_answers))

    sink.on_start({
        "total_steps": total_steps, "start_step": start, "tokens_per_step": per_step * length,
        "train_sequences": len(train_seq), "validation_sequences": len(val_seq),
        "train_examples": len(prepared.train), "validation_examples": len(prepared.validation),
        "trainable_params": int(sum(np.size(x) for x in trainable)), "task": task,
        "recipe": recipe.to_dict(),
    })

    def save(step, is_best=False):
        meta = {"tokens_seen": tokens_seen, "best_val_loss": best, "best_step": best_step,
                "bad_evals": bad_evals, "data_position": step * per_step,
                "rng": {"train_seed": t.seed, "data_seed": recipe.data.seed}}
        checkpoint_allowed(sink, step)  # a superseded attempt is refused here
        path = save_checkpoint(run_dir, step, trainable, opt_state, meta, best_step=best_step)
        sink.on_checkpoint(step, str(path), is_best)

    def evaluate(step) -> dict[str, float]:
        nonlocal best, best_step, bad_evals
        metrics = steps.evaluate(trainable, frozen, val_seq, t.batch_size) if len(val_seq) else {}
        if step == 0:  # the base model's validation loss: where the curves start
            sink.on_metrics(0, 0, metrics)
            return metrics
        steps.assign(trainable)
        tuned = _answers(generator, samples, e.max_new_tokens)
        predictions = _answers(generator, task_rows, e.max_new_tokens)
        metrics.update(_task_metrics(task, predictions, [r["reference"] for r in task_rows]))
        sink.on_metrics(step, tokens_seen, metrics)
        sink.on_samples(step, [{**s, "base": b, "tuned": a}
                               for s, b, a in zip(samples, base_answers, tuned)])
        if "val_loss" in metrics:
            if best is None or metrics["val_loss"] < best - 1e-4:
                best, best_step, bad_evals = metrics["val_loss"], step, 0
                save(step, is_best=True)
            else:
                bad_evals += 1
        return metrics

    if start == 0 and len(val_seq):
        evaluate(0)
    base_key = jax.random.PRNGKey(t.seed)
    step_times: list[float] = []
    status, message, last = "succeeded", None, {}
    step = start
    while step < total_steps:
        batch = batch_at(train_seq, step, t.batch_size, t.gradient_accumulation, recipe.data.seed)
        arrays = (batch.inputs, batch.targets, batch.loss_mask, batch.segment_ids)
        began = time.perf_counter()
        trainable, opt_state, out = steps.train_step(
            trainable, opt_state, frozen, arrays, jax.random.fold_in(base_key, step))
        loss = float(out["loss"])  # host-device sync point: the step is done here
        elapsed = time.perf_counter() - began
        step += 1
        real = batch.real_tokens
        tokens_seen += real
        if not math.isfinite(loss):
            message = (f"the loss became {loss} at step {step}: lower train.learning_rate "
                       f"(now {t.learning_rate:g}), keep train.max_grad_norm > 0, or use "
                       "model.dtype=float32; the last checkpoint is intact.")
            sink.on_end("failed", message)
            raise TrainingError(message)
        step_times.append(elapsed)
        recent = float(np.mean(step_times[-10:])) if len(step_times) > 1 else elapsed
        if step % t.log_every == 0 or step == total_steps:
            last = {"loss": loss, "learning_rate": float(steps.schedule(step - 1)),
                    "grad_norm": float(out["grad_norm"]), "tokens_per_s": real / elapsed,
                    "step_time_s": elapsed, "eta_s": recent * (total_steps - step),
                    "epoch": step * per_step / len(train_seq)}
            sink.on_metrics(step, tokens_seen, last)
        if step % e.every_steps == 0 or step == total_steps:
            evaluate(step)
            if e.early_stopping_patience and bad_evals >= e.early_stopping_patience:
                status = "stopped_early"
                message = (f"validation loss has not improved for {bad_evals} evaluations; "
                           f"the best checkpoint is step {best_step}")
                break
        if step % t.checkpoint_every == 0 and step != best_step:
            save(step)
        if should_stop():
            status, message = "cancelled", f"stopped at step {step} on request"
            break
    if latest_checkpoint(run_dir) is None or latest_checkpoint(run_dir).name != f"step-{step:06d}":
        save(step)
    steps.assign(trainable)
    sink.on_end(status, message)
    return TrainResult(status, step, message, best, last, model=lm)
