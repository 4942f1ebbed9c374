"""Time to quality for ``train_throughput.py --quality``: the wall time each trainer needs to
reach a target validation loss, not only its tokens/s.

The KerasHub ``fit`` baseline (batch 1, constant learning rate) runs first, for ``--epochs``,
and evaluates every ``EVAL_STEPS`` packed sequences' worth of real tokens; its loss at the end
is the first target, ``LOWER`` times that the second. Ours then runs at the recipe's own
setting (its epochs, so the cosine schedule decays over the quickstart's 176 steps),
evaluating every ``EVAL_STEPS`` steps, so both are evaluated on the same validation rows by
the same code at (within one example) the same token counts; it stops once it reaches the
second target or has seen twice the baseline's tokens. The time to a target is the training
time (compilation included, evaluations left out) up to the first evaluation at or below it.
"""

from __future__ import annotations

import sys

import gemma_panel  # noqa: F401  (sets KERAS_BACKEND=jax before Keras is imported)
from gemma_panel.training.events import NullSink

EVAL_STEPS = 11  # the quickstart's 88 packed steps an epoch: 8 evaluations (--eval-steps)
LOWER = 0.75  # the second target: this times the baseline's loss after its epochs


class CurveSink(NullSink):
    """A sink keeping (real tokens, training seconds, validation loss) at each evaluation."""

    def __init__(self):
        self.seconds, self.tokens, self.curve = 0.0, 0, []

    def on_metrics(self, step, tokens, metrics):
        if "step_time_s" in metrics:
            self.seconds += metrics["step_time_s"]
            self.tokens = tokens
        if "val_loss" in metrics:
            self.curve.append((self.tokens, self.seconds, metrics["val_loss"]))
            print(f"CURVE {self.curve[-1]}", file=sys.stderr, flush=True)  # rows take minutes


def ours_curve(recipe, stop_below: float, max_tokens: int) -> dict:
    """Our trainer at the recipe's setting, stopped at ``stop_below`` or ``max_tokens``."""
    import dataclasses
    import tempfile

    from gemma_panel.training import train

    recipe = dataclasses.replace(
        recipe, train=dataclasses.replace(recipe.train, log_every=1),
        eval=dataclasses.replace(recipe.eval, every_steps=EVAL_STEPS))
    sink = CurveSink()

    def should_stop() -> bool:
        reached = sink.curve and sink.curve[-1][2] <= stop_below
        return bool(reached) or sink.tokens >= max_tokens

    with tempfile.TemporaryDirectory() as run_dir:
        train(recipe, run_dir, sink, should_stop)
    return {"curve": sink.curve}


def baseline_callback(lm, recipe, prepared, clock):
    """A Keras callback evaluating the fit model every EVAL_STEPS packed sequences' worth of
    real tokens with our evaluator; ``clock.times`` gives the training seconds so far."""
    import keras
    import numpy as np

    from gemma_panel.training.batches import build_sequences, max_loss_tokens
    from gemma_panel.training.step import TrainFunctions

    length = recipe.data.sequence_length
    packed = build_sequences(prepared.train_tokens, length, True, recipe.data.seed)
    quantum = EVAL_STEPS * packed.real_tokens / len(packed)  # ours: 1 packed sequence a step
    per_batch = recipe.train.batch_size * float(np.mean(
        [min(len(t.input_ids), length) for t in prepared.train_tokens]))
    val = build_sequences(prepared.validation_tokens, length, True, 0)
    evaluator = TrainFunctions(lm, recipe, 1, 128, max_loss_tokens(val, 1))

    class Curve(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.curve, self.tokens, self.next = [], 0.0, quantum

        def evaluate(self):
            self.model  # noqa: B018  (Keras syncs the trained values into the variables)
            trainable, _, frozen = evaluator.initial_state()
            loss = evaluator.evaluate(trainable, frozen, val, 1)["val_loss"]
            self.curve.append((round(self.tokens), float(np.sum(clock.times)), loss))
            print(f"CURVE {self.curve[-1]}", file=sys.stderr, flush=True)

        def on_train_begin(self, logs=None):
            self.evaluate()

        def on_train_batch_end(self, batch_index, logs=None):
            self.tokens += per_batch  # fit shuffles the rows: count the mean example
            if self.tokens >= self.next:
                self.next += quantum
                self.evaluate()

    return Curve()


def time_to(curve, target: float) -> float | None:
    """Training seconds to the first evaluation at or below ``target``; None: never."""
    return next((seconds for _, seconds, loss in curve if loss <= target + 1e-9), None)


def report(baseline: dict, variants: dict) -> None:
    """``variants``: ours' results by their recipe overrides ("": the recipe as it is)."""
    print("\ntime to quality (real tokens:training seconds, evaluations left out:validation "
          "loss at each evaluation)")
    print(f"  KerasHub fit at batch 1: {points(baseline)}")
    for variant, ours in variants.items():
        print(f"\ngemma_panel, {variant or 'the recipe as it is'}: {points(ours)}")
        compare(baseline, ours)


def points(result: dict) -> str:
    return ", ".join(f"{t}:{s:.0f}s:{loss:.3f}" for t, s, loss in result["curve"])


def compare(baseline: dict, ours: dict) -> None:
    first = baseline["curve"][-1][2]
    for label, target in (("baseline's loss after its epochs", first),
                          (f"{LOWER} x that", LOWER * first)):
        fit_s, ours_s = time_to(baseline["curve"], target), time_to(ours["curve"], target)
        fit_text = f"{fit_s:.0f} s" if fit_s is not None else \
            f"> {baseline['curve'][-1][1]:.0f} s (not reached)"
        ours_text = f"{ours_s:.0f} s" if ours_s is not None else \
            f"> {ours['curve'][-1][1]:.0f} s (not reached)"
        if ours_s is not None:
            bound = fit_s if fit_s is not None else baseline["curve"][-1][1]
            ratio = f"{'>= ' if fit_s is None else ''}{bound / max(ours_s, 1e-9):.2f}x sooner"
        else:
            ratio = "ours did not reach it"
        print(f"  to {target:.4f} ({label}): fit {fit_text}, ours {ours_text}: {ratio} "
              "(target >= 2x)")

