"""Keras weight quantization for edge devices: ``model.quantize("int8" | "int4")``.

The merged model is quantized by Keras (per-channel int8 or int4 kernels with float scales,
the embedding included) and saved as ``model.keras``; the check reloads it with
``keras.saving.load_model``. Reported for every quantized export: the file size against the
float model's, the logit difference on the probe and the change in validation perplexity.
"""

from __future__ import annotations

import contextlib
import gc
import weakref
from pathlib import Path

import numpy as np

from gemma_panel.export.manifest import ExportError
from gemma_panel.export.verify import (
    LoraBase,
    Verification,
    check_carries_lora,
    compare_logits,
    logits_inputs,
    note_perplexity_change,
    perplexity,
)
from gemma_panel.models.lora import lora_layers, sublayers

KERAS_MODES = ("int8", "int4")


def quantized_copy(model, mode: str):
    """A quantized copy of a merged model (the original stays float)."""
    if mode not in KERAS_MODES:
        raise ExportError(f"Keras quantization '{mode}' is not one of {', '.join(KERAS_MODES)}.")
    if lora_layers(model):
        raise ExportError("Merge LoRA before quantizing (Keras quantizes base kernels only).")
    # a fresh copy, so the caller's float model is not quantized in place
    copy = type(model.backbone).from_config(model.backbone.get_config())
    copy.set_weights(model.backbone.get_weights())
    quantized = type(model)(backbone=copy, preprocessor=model.preprocessor)
    try:
        with one_collection():
            quantized.quantize(mode)
    except Exception as exc:  # Keras raises NotImplementedError/ValueError per layer type
        raise ExportError(f"Keras cannot quantize this model to {mode}: {exc}") from exc
    return quantized


@contextlib.contextmanager
def one_collection():
    """One garbage collection at the end instead of one per variable: Keras's
    ``Layer.__delattr__`` runs ``gc.collect()`` for every kernel ``quantize`` replaces, about
    a second each in a process holding a model (30 of them for a 2-layer Gemma)."""
    collect = gc.collect
    gc.collect = lambda generation=2: 0
    try:
        yield
    finally:
        gc.collect = collect
        gc.collect()


# Each quantized model's forward pass, compiled once (weakly keyed: it goes with the model).
_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def quantized_logits(lm, ids: np.ndarray, padding_mask: np.ndarray | None = None) -> np.ndarray:
    """The logits of a quantized model (as ``verify.keras_logits``) through one compiled
    forward pass per model and shape. Called op by op, Keras's int8 layers trace and compile
    their matmul again on every call (its custom gradient is a new function each time), which
    was most of an int8 export's time (``python benchmarks/export_cost.py --only keras:int8``)."""
    import jax

    forward = _FORWARDS.get(lm)
    if forward is None:
        model = weakref.ref(lm)

        def call(trainable, non_trainable, inputs):
            return model().stateless_call(trainable, non_trainable, inputs, training=False)[0]

        forward = _FORWARDS[lm] = jax.jit(call)
    logits = forward([v.value for v in lm.trainable_variables],
                     [v.value for v in lm.non_trainable_variables],
                     logits_inputs(lm, ids, padding_mask))
    return np.asarray(logits, dtype=np.float32)


def float_bytes(model) -> int:
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize
                   for v in model.backbone.weights))


def quantized_file_logits(model, mode: str, folder: Path, ids) -> np.ndarray:
    """Logits of ``model`` quantized, saved as ``model.keras`` in ``folder`` and reloaded."""
    import keras
    import keras_hub  # noqa: F401

    path = Path(folder) / "model.keras"
    quantized_copy(model, mode).save(path)
    return quantized_logits(keras.saving.load_model(path), ids)


def export_quantized_keras(model, folder: Path, mode: str, check: Verification, ids,
                           reference, validation=None, reference_ppl: float | None = None,
                           base: LoraBase | None = None):
    """Quantize, save ``model.keras``, reload, and report size, drift and perplexity.

    For a LoRA run the base model is quantized and reloaded the same way, and the file must
    sit measurably closer to the tuned model than to that (``carries_lora``)."""
    import keras
    import keras_hub  # noqa: F401

    quantized = quantized_copy(model, mode)
    in_memory = quantized_logits(quantized, ids)
    path = Path(folder) / "model.keras"
    quantized.save(path)
    del quantized
    reloaded = keras.saving.load_model(path)
    modes = {getattr(layer, "quantization_mode", None)
             for layer in sublayers(reloaded)}
    check.check("keras_quantized_layers", mode in modes,
                f"reloaded model has {mode} layers: {mode in modes}")
    logits = quantized_logits(reloaded, ids)
    # The file must hold the quantized model exactly; how far quantization moved the model
    # is measured and reported, not judged (a 270M model loses much at 4 bits).
    compare_logits(check, f"keras_{mode}_logits", logits, in_memory, 1e-4)
    drift = float(np.abs(logits - reference).max())
    top1 = float((logits.argmax(-1) == reference.argmax(-1)).mean())
    check.note("quantization_logit_drift",
               f"{mode}: max |logit difference| from the float model {drift:.3g}, top-1 "
               f"agreement {top1:.3f} on {ids.shape[1]} probe tokens", max_abs_diff=drift,
               top1_agreement=top1)
    check_carries_lora(check, f"keras_{mode}_carries_lora", folder, logits, reference, base,
                       lambda scratch: quantized_file_logits(base.model, mode, scratch, ids))
    size, full = path.stat().st_size, float_bytes(model)
    check.note("file_size", f"{size / 1e6:.1f} MB vs {full / 1e6:.1f} MB of float weights "
               f"({size / full:.2f}x)", bytes=size, float_bytes=full, ratio=size / full)
    ppl = perplexity(lambda x, m: quantized_logits(reloaded, x, m), validation)
    note_perplexity_change(check, reference_ppl, ppl, f"Keras {mode}")
    return path
