"""What the trainer reports, and the sinks that receive it.

The training loop calls a sink; it never asks whether anyone listens (a ``NullSink`` is the
default) and never touches a UI. Sinks: ``StdoutSink`` (one progress line per step),
the run store's sink (gemma_panel.runs), and ``MultiSink`` to fan out to several.

Metric names used by the trainer:
    train: loss, learning_rate, grad_norm, tokens_per_s, step_time_s, eta_s, epoch,
           mfu (model FLOP utilisation: counted FLOPs / step time / the peak measured at
           start-up, training/flops.py)
    eval:  val_loss, val_perplexity, val_token_accuracy (+ accuracy, macro_f1, exact_match,
           token_f1 when the task has them)
"""

from __future__ import annotations

import sys
from typing import Any, Protocol


class EventSink(Protocol):
    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first step: total_steps, tokens_per_step, start_step, recipe,
        peak_flops (FLOP/s the devices reach on a matmul, measured here)."""

    def on_metrics(self, step: int, tokens: int, metrics: dict[str, float]) -> None:
        """Named values at an optimizer step; ``tokens`` is real tokens seen so far."""

    def on_samples(self, step: int, samples: list[dict[str, str]]) -> None:
        """Generations at an evaluation: dicts with prompt, reference, base, tuned."""

    def on_checkpoint_start(self, step: int) -> None:
        """Optional: a checkpoint of ``step`` is about to be written. A sink may raise to
        forbid it (the run store does once this process is no longer the run's current
        attempt); the exception ends the run. Sinks without this method allow every save."""

    def on_checkpoint(self, step: int, path: str, best: bool) -> None:
        """A checkpoint was written (and is complete) at ``path``."""

    def on_log(self, message: str) -> None:
        """A line of text worth keeping in the run's log."""

    def on_end(self, status: str, message: str | None) -> None:
        """Once, at the end: succeeded, failed, cancelled or stopped_early, with a reason."""


class NullSink:
    """Receives everything and does nothing."""

    def on_start(self, info): pass
    def on_metrics(self, step, tokens, metrics): pass
    def on_samples(self, step, samples): pass
    def on_checkpoint_start(self, step): pass
    def on_checkpoint(self, step, path, best): pass
    def on_log(self, message): pass
    def on_end(self, status, message): pass


class MultiSink:
    """Forward every event to each sink in turn."""

    def __init__(self, *sinks: EventSink):
        self.sinks = [s for s in sinks if s is not None]

    def __getattr__(self, name):
        def forward(*args, **kwargs):
            for sink in self.sinks:
                if name in _OPTIONAL and not hasattr(sink, name):
                    continue
                getattr(sink, name)(*args, **kwargs)
        return forward


_OPTIONAL = frozenset({"on_checkpoint_start"})


def checkpoint_allowed(sink, step: int) -> None:
    """Ask ``sink`` whether a checkpoint of ``step`` may be written (it raises if not)."""
    if hasattr(sink, "on_checkpoint_start"):
        sink.on_checkpoint_start(step)


def duration(seconds: float | None) -> str:
    """A run's length or an ETA as h:mm:ss, '-' when unknown: the progress line's and the
    command line's one rule (``gemma_panel.cli.format`` uses it)."""
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StdoutSink(NullSink):
    """nanoGPT-style progress: one line per logged step, one per evaluation."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.total_steps = None

    def _print(self, text):
        print(text, file=self.stream, flush=True)

    def on_start(self, info):
        self.total_steps = info.get("total_steps")
        peak = (f"; MFU against a measured peak of {info['peak_flops'] / 1e9:,.0f} GFLOP/s"
                if info.get("peak_flops") else "")
        self._print(f"training {info.get('trainable_params', 0):,} parameters for "
                    f"{self.total_steps} steps, {info.get('tokens_per_step', 0):,} token "
                    f"slots per step (from step {info.get('start_step', 0)}){peak}")

    def on_metrics(self, step, tokens, metrics):
        if "loss" in metrics:
            self._print(
                f"step {step:>5}/{self.total_steps} | loss {metrics['loss']:.4f} | "
                f"lr {metrics.get('learning_rate', 0):.2e} | "
                f"{metrics.get('tokens_per_s', 0):,.0f} tok/s | "
                + (f"MFU {metrics['mfu']:.1%} | " if "mfu" in metrics else "")
                + f"{metrics.get('step_time_s', 0) * 1000:,.0f} ms | "
                f"ETA {duration(metrics.get('eta_s', 0))}"
            )
        if "val_loss" in metrics:
            extra = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "val_loss")
            self._print(f"eval @ {step} | val_loss {metrics['val_loss']:.4f} | {extra}")

    def on_samples(self, step, samples):
        for s in samples:
            self._print(f"  prompt: {s['prompt'][:100]!r}\n    base:  {s['base'][:100]!r}\n"
                        f"    tuned: {s['tuned'][:100]!r}")

    def on_log(self, message):
        self._print(message)

    def on_end(self, status, message):
        self._print(f"{status}" + (f": {message}" if message else ""))
