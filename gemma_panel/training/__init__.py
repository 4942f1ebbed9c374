"""Training: recipes to tuned weights, on JAX with optax, reporting through sinks."""

from gemma_panel.training.events import (
    EventSink,
    JsonlSink,
    MultiSink,
    NullSink,
    StdoutSink,
    TensorBoardSink,
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
    "JsonlSink",
    "MultiSink",
    "NullSink",
    "StdoutSink",
    "TensorBoardSink",
    "TrainResult",
    "TrainingError",
    "load_tuned_model",
    "prepare_data",
    "train",
]
