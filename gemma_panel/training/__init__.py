"""Training: recipes to tuned weights, on JAX with optax, reporting through sinks."""

from gemma_panel.training.events import (
    EventSink,
    MultiSink,
    NullSink,
    StdoutSink,
)
from gemma_panel.training.trainer import (
    TrainingError,
    TrainResult,
    load_tuned_model,
    prepare_data,
    train,
)

__all__ = [
    "EventSink",
    "MultiSink",
    "NullSink",
    "StdoutSink",
    "TrainResult",
    "TrainingError",
    "load_tuned_model",
    "prepare_data",
    "train",
]
