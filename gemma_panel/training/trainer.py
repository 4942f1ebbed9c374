"""``train``: one fine-tuning run, from a recipe to checkpoints, metrics and samples.

Read ``train`` top to bottom: prepare the run (load the model and the data, enable LoRA,
lay the data into fixed shape sequences), restore a checkpoint when resuming, answer the
sample prompts with the base model, then loop over optimizer steps, evaluating,
checkpointing and listening for a stop request. What changes from step to step is one
``TrainState``; the named steps are methods of ``TrainingRun``. Everything it has to say
goes to the sink.
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
from gemma_panel.data.images import trains_images
from gemma_panel.distribution import multihost
from gemma_panel.training.batches import batch_at, build_sequences, max_loss_tokens
from gemma_panel.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from gemma_panel.training.events import EventSink, NullSink, checkpoint_allowed
from gemma_panel.training.samples import answers_both, sample_items, task_metrics
from gemma_panel.training.setup import (
    TrainingError,
    load_tuned_model,
    prepare_data,
)
from gemma_panel.training.vision_samples import image_sample_items


@dataclass
class TrainResult:
    """How a run ended. ``model`` is the tuned causal LM (in-process callers only)."""

    status: str
    step: int
    message: str | None = None
    best_val_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    model: Any = None


@dataclass
class TrainState:
    """What the loop changes as it goes; a checkpoint holds all of it but the last two.

    ``step`` counts optimizer steps done, ``tokens_seen`` the real (non-padding) tokens
    they saw. ``best_val_loss``/``best_step`` and ``bad_evals`` (evaluations since the
    best) drive early stopping, so a resumed run stops where an uninterrupted one would.
    """

    trainable: list
    opt_state: Any
    step: int = 0
    tokens_seen: int = 0
    best_val_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    saved_step: int | None = None  # the step of the last checkpoint written or restored
    last_metrics: dict[str, float] = field(default_factory=dict)  # the last logged step's
    step_times: list[float] = field(default_factory=list)  # seconds, for the ETA


@dataclass
class TrainingRun:
    """What stays fixed for a run once it is prepared, and the named steps of its loop."""

    recipe: Recipe
    run_dir: Path
    sink: EventSink
    lm: Any
    prepared: Any
    train_seq: Any
    val_seq: Any
    total_steps: int
    compiled: Any  # the TrainFunctions: jitted train and eval steps, the schedule
    frozen: list
    generator: Any
    samples: list[dict]
    task_rows: list[dict]
    base_key: Any
    shardings: Any = None  # StepShardings when the run spans several devices
    meter: Any = None  # MfuMeter: each logged step's model FLOP utilisation
    base_answers: list[str] = field(default_factory=list)

    @property
    def per_step(self) -> int:
        """Sequences per optimizer step."""
        return _sequences_per_step(self.recipe)

    @property
    def task(self) -> str:
        return self.prepared.mapping.task

    @classmethod
    def prepare(cls, recipe: Recipe, run_dir: Path, sink: EventSink) -> tuple[TrainingRun,
                                                                              TrainState]:
        """Write the recipe, load the model and data, compile the steps: (run, step-0 state)."""
        import jax

        from gemma_panel.distribution.placement import shard_for_run
        from gemma_panel.models.generation import StreamingGenerator
        from gemma_panel.training.flops import MfuMeter
        from gemma_panel.training.step import TrainFunctions

        if multihost.is_primary():  # the others of a multi-host run write no file
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe))
        t = recipe.train
        lm = load_tuned_model(recipe)
        prepared = prepare_data(recipe, lm)
        images = trains_images(prepared.report)  # image rows: training/vision.py lays them out
        train_seq, val_seq = _sequences(recipe, prepared, lm if images else None, sink)
        total_steps = t.max_steps or max(
            1, math.ceil(t.epochs * len(train_seq) / _sequences_per_step(recipe)))
        functions = TrainFunctions
        if images:
            from gemma_panel.training.vision import VisionTrainFunctions as functions
        compiled = functions(lm, recipe, total_steps, max_loss_tokens(train_seq, t.batch_size),
                             max_loss_tokens(val_seq, t.batch_size) if len(val_seq) else 128)
        trainable, opt_state, frozen = compiled.initial_state()
        shardings = shard_for_run(recipe, lm, compiled, sink.on_log)
        if shardings is not None and images:
            raise TrainingError("image data trains on one device so far; set "
                                "distribution.strategy=single.")
        if shardings is not None:
            trainable, opt_state, frozen = shardings.place(trainable, opt_state, frozen)
        generator = StreamingGenerator(lm)
        samples, task_rows = (image_sample_items(prepared, recipe, lm) if images
                              else sample_items(prepared, recipe))
        meter = MfuMeter.for_model(lm.backbone, full=not recipe.lora.enabled,
                                   dtype=lm.backbone.dtype_policy.compute_dtype,
                                   devices=len(jax.devices()) if shardings else 1)
        run = cls(recipe, run_dir, sink, lm, prepared, train_seq, val_seq, total_steps, compiled,
                  frozen, generator, samples, task_rows, jax.random.PRNGKey(t.seed), shardings,
                  meter=meter)
        return run, TrainState(trainable, opt_state)

    def restore(self, state: TrainState) -> None:
        """Continue ``state`` from the run's last whole checkpoint, when there is one.

        Every process restores: process 0 reads the checkpoint (only its disk need hold
        one) and sends it to the others of a multi-host run.
        """
        checkpoint = latest_checkpoint(self.run_dir) if multihost.is_primary() else None
        if not multihost.agree(checkpoint is not None):
            self.sink.on_log("no checkpoint to resume from: starting from step 0")
            return
        loaded = meta = None
        if checkpoint is not None:
            *loaded, meta = load_checkpoint(checkpoint, state.trainable, state.opt_state)
        (state.trainable, state.opt_state), meta = multihost.share_checkpoint(
            loaded, meta, (state.trainable, state.opt_state))
        if self.shardings is not None:  # a checkpoint is host arrays: any mesh resumes it
            state.trainable, state.opt_state = self.shardings.place_trained(
                state.trainable, state.opt_state)
        state.step, state.tokens_seen = meta["step"], meta["tokens_seen"]
        state.best_val_loss, state.best_step = meta["best_val_loss"], meta["best_step"]
        state.bad_evals = meta["bad_evals"]
        state.saved_step = state.step

    def answer_as_base(self) -> None:
        """The base model's answers to the samples, kept in the run folder for a resume
        (process 0 only: the others of a multi-host run report nothing)."""
        if not multihost.is_primary():
            return
        path = self.run_dir / "base_samples.json"
        if path.is_file():
            self.base_answers = json.loads(path.read_text())
        else:  # the base model answers before any update (LoRA's B starts at zero)
            self.base_answers = self.answers_both()[0]
            path.write_text(json.dumps(self.base_answers))

    def announce(self, state: TrainState) -> None:
        """Tell the sink what the run is about to do."""
        self.sink.on_start({
            "total_steps": self.total_steps, "start_step": state.step,
            "tokens_per_step": self.per_step * self.recipe.data.sequence_length,
            "train_sequences": len(self.train_seq),
            "validation_sequences": len(self.val_seq),
            "train_examples": len(self.prepared.train),
            "validation_examples": len(self.prepared.validation),
            "trainable_params": int(sum(np.size(x) for x in state.trainable)),
            "task": self.task, "recipe": self.recipe.to_dict(),
            "peak_flops": self.meter.peak,
        })

    def answers_both(self) -> tuple[list[str], list[str]]:
        return answers_both(self.generator, self.samples, self.task_rows,
                            self.recipe.eval.max_new_tokens)

    def optimizer_step(self, state: TrainState) -> None:
        """One optimizer step; its metrics go to the sink when a log line is due.

        Raises:
            TrainingError: the loss is NaN or infinite (the sink has been told, on_end).
        """
        import jax

        t, data = self.recipe.train, self.recipe.data
        batch = batch_at(self.train_seq, state.step, t.batch_size, t.gradient_accumulation,
                         data.seed)
        arrays = batch.arrays()
        if self.shardings is not None:  # each process gives the rows its devices hold
            arrays = multihost.feed_batch(self.shardings, arrays)
        began = time.perf_counter()
        state.trainable, state.opt_state, out = self.compiled.train_step(
            state.trainable, state.opt_state, self.frozen, arrays,
            jax.random.fold_in(self.base_key, state.step))
        loss = float(out["loss"])  # host-device sync point: the step is done here
        elapsed = time.perf_counter() - began
        state.step += 1
        state.tokens_seen += batch.real_tokens
        if not math.isfinite(loss):
            message = (f"the loss became {loss} at step {state.step}: lower "
                       f"train.learning_rate (now {t.learning_rate:g}), keep "
                       "train.max_grad_norm > 0, or use model.dtype=float32; the last "
                       "checkpoint is intact.")
            self.sink.on_end("failed", message)
            raise TrainingError(message)
        state.step_times.append(elapsed)
        if self.due(state, t.log_every):
            recent = float(np.mean(state.step_times[-10:])) if len(state.step_times) > 1 \
                else elapsed
            state.last_metrics = {
                "loss": loss, "learning_rate": float(self.compiled.schedule(state.step - 1)),
                "grad_norm": float(out["grad_norm"]),
                "tokens_per_s": batch.real_tokens / elapsed, "step_time_s": elapsed,
                "mfu": self.meter.mfu(batch.segment_ids, batch.loss_mask, elapsed),
                "eta_s": recent * (self.total_steps - state.step),
                "epoch": state.step * self.per_step / len(self.train_seq)}
            self.sink.on_metrics(state.step, state.tokens_seen, state.last_metrics)

    def due(self, state: TrainState, every: int) -> bool:
        """Whether something done every ``every`` steps (and at the end) is due now."""
        return state.step % every == 0 or state.step == self.total_steps

    def evaluate(self, state: TrainState) -> None:
        """Validation metrics and samples; a new best validation loss is checkpointed.

        At step 0 only the base model's validation loss, where the curves start.
        """
        compiled, val_seq = self.compiled, self.val_seq
        metrics = (compiled.evaluate(state.trainable, self.frozen, val_seq,
                                     self.recipe.train.batch_size) if len(val_seq) else {})
        if state.step == 0:
            self.sink.on_metrics(0, 0, metrics)
            return
        compiled.assign(multihost.addressable(state.trainable))
        if multihost.is_primary():  # samples and task scores: process 0 generates them
            self.report_samples(state, metrics)
        if "val_loss" in metrics:
            best = state.best_val_loss
            if best is None or metrics["val_loss"] < best - 1e-4:
                state.best_val_loss, state.best_step = metrics["val_loss"], state.step
                state.bad_evals = 0
                self.checkpoint(state, is_best=True)
            else:
                state.bad_evals += 1

    def report_samples(self, state: TrainState, metrics: dict) -> None:
        """Generate the samples and task rows; report them with ``metrics``."""
        tuned, predictions = self.answers_both()
        metrics.update(task_metrics(self.task, predictions,
                                     [r["reference"] for r in self.task_rows]))
        self.sink.on_metrics(state.step, state.tokens_seen, metrics)
        self.sink.on_samples(state.step, [{**s, "base": b, "tuned": a} for s, b, a
                                          in zip(self.samples, self.base_answers, tuned)])

    def checkpoint(self, state: TrainState, is_best: bool = False) -> None:
        """Save ``state`` as the checkpoint of its step (the sink may refuse: it raises).

        Every process gathers the state (a collective on a multi-host run); process 0
        alone writes it.
        """
        recipe = self.recipe
        meta = {"tokens_seen": state.tokens_seen, "best_val_loss": state.best_val_loss,
                "best_step": state.best_step, "bad_evals": state.bad_evals,
                "data_position": state.step * self.per_step,
                "rng": {"train_seed": recipe.train.seed, "data_seed": recipe.data.seed}}
        trainable, opt_state = multihost.to_host((state.trainable, state.opt_state))
        state.saved_step = state.step
        if not multihost.is_primary():
            return
        checkpoint_allowed(self.sink, state.step)  # a superseded attempt is refused here
        path = save_checkpoint(self.run_dir, state.step, trainable, opt_state, meta,
                               best_step=state.best_step)
        self.sink.on_checkpoint(state.step, str(path), is_best)

    def after_step(self, state: TrainState, should_stop: Callable[[], bool]
                   ) -> tuple[str, str] | None:
        """Evaluate and checkpoint as due, then listen for a stop: (status, why) to stop."""
        e, t = self.recipe.eval, self.recipe.train
        if self.due(state, e.every_steps):
            self.evaluate(state)
            if e.early_stopping_patience and state.bad_evals >= e.early_stopping_patience:
                return "stopped_early", (
                    f"validation loss has not improved for {state.bad_evals} evaluations; "
                    f"the best checkpoint is step {state.best_step}")
        if state.step % t.checkpoint_every == 0 and state.step != state.best_step:
            self.checkpoint(state)
        if should_stop():
            return "cancelled", f"stopped at step {state.step} on request"
        return None

    def finish(self, state: TrainState) -> None:
        """Checkpoint the last step (unless it is already) and give the model its weights."""
        if state.saved_step != state.step:
            self.checkpoint(state)
        self.compiled.assign(multihost.addressable(state.trainable))


def _sequences_per_step(recipe: Recipe) -> int:
    return recipe.train.batch_size * recipe.train.gradient_accumulation


def _sequences(recipe: Recipe, prepared, vision_lm=None, sink: EventSink | None = None):
    """(train, validation) fixed-length sequences; validation cut to eval.max_examples.

    With ``vision_lm`` (image data), its preprocessor lays out the image rows."""
    data, e = recipe.data, recipe.eval
    if vision_lm is not None:
        from gemma_panel.training.vision import image_sequences

        train_seq, val_seq = image_sequences(recipe, prepared, vision_lm, sink)
    else:
        train_seq = build_sequences(prepared.train_tokens, data.sequence_length, data.pack,
                                    data.seed)
        val_seq = build_sequences(prepared.validation_tokens, data.sequence_length,
                                  data.pack, data.seed)
    if e.max_examples is not None and len(val_seq) > e.max_examples:
        val_seq = val_seq.take(np.arange(e.max_examples))
    if len(train_seq) == 0:
        raise TrainingError("no training example has a token to learn; check the template "
                            "and data.sequence_length with 'gemma-panel data check'.")
    return train_seq, val_seq


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
    multihost.initialize()  # joins the cluster this host belongs to, if any (before JAX)
    primary = multihost.is_primary()
    sink = sink if sink is not None and primary else NullSink()
    asked = should_stop or (lambda: False)

    def should_stop() -> bool:  # process 0's answer, so that every process stops together
        return bool(multihost.agree(primary and asked()))

    resume = bool(multihost.agree(resume))
    run, state = TrainingRun.prepare(recipe, Path(run_dir), sink)
    if resume:
        run.restore(state)
    run.answer_as_base()
    run.announce(state)
    if state.step == 0 and len(run.val_seq):
        run.evaluate(state)
    status, message = "succeeded", None
    while state.step < run.total_steps:
        run.optimizer_step(state)
        stop = run.after_step(state, should_stop)
        if stop is not None:
            status, message = stop
            break
    run.finish(state)
    sink.on_end(status, message)
    return TrainResult(status, state.step, message, state.best_val_loss, state.last_metrics,
                       model=run.lm)
