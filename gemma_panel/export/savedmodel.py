"""TensorFlow SavedModel with a serving signature: token ids and padding mask in, logits out.

``model.export(format="tf_saved_model")`` fails on Gemma 3 with default arguments; it works
on the model without its preprocessor and with an explicit input signature (DESIGN.md). So
the artifact serves logits, not ``generate``: a TF Serving client tokenizes (the exported
``tokenizer.model`` is copied beside it) and decodes. The check loads it with
``tf.saved_model.load`` and calls both ``serve`` and the ``serving_default`` signature.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gemma_panel.export.verify import LoraBase, Verification, check_carries_lora, compare_logits

# 1e-4, or 1e-5 of the largest logit when that is more: TensorFlow's runtime sums float32
# in another order than XLA on JAX. Measured on Gemma 3 270M (logits up to ~30): 1.5e-4.
SAVEDMODEL_TOLERANCE = 1e-4
SAVEDMODEL_RELATIVE = 1e-5
SAVEDMODEL_DIR = "saved_model"


def input_names(model) -> list[str]:
    """The backbone's int32 inputs: token ids and padding mask, and Gemma 4's position ids."""
    extra = ["position_ids"] if "position_ids" in getattr(model.backbone, "input", {}) else []
    return ["token_ids", "padding_mask"] + extra


def write_savedmodel(model, folder: Path, length: int | None = None) -> Path:
    """The SavedModel in ``folder/saved_model``: any batch and length, or (1, ``length``)
    (the fixed signature the LiteRT converter takes, export/litert.py)."""
    import keras

    plain = type(model)(backbone=model.backbone, preprocessor=None)
    shape = (None, None) if length is None else (1, length)
    names = input_names(model)
    signature = [{n: keras.InputSpec(shape=shape, dtype="int32", name=n) for n in names}]
    path = Path(folder) / SAVEDMODEL_DIR
    # One symbolic length for every input: Keras would name them apart ("a", "b"), and the
    # attention mask cannot broadcast two unrelated lengths.
    shapes = [{n: "(batch, length)" for n in names}]
    options = {} if length else {"jax2tf_kwargs": {"polymorphic_shapes": shapes}}
    plain.export(str(path), format="tf_saved_model", input_signature=signature, verbose=False,
                 **options)
    proto = getattr(model.preprocessor.tokenizer, "proto", None)
    if proto:
        (Path(folder) / "tokenizer.model").write_bytes(proto)
    return path


def serve_logits(loaded, ids) -> np.ndarray:
    import tensorflow as tf

    inputs = {"token_ids": tf.constant(ids, tf.int32),
              "padding_mask": tf.ones(ids.shape, tf.int32)}
    return np.asarray(loaded.serve(inputs), dtype=np.float32)


def export_savedmodel(model, folder: Path, check: Verification, ids, reference,
                      base: LoraBase | None = None) -> Path:
    import tensorflow as tf

    path = write_savedmodel(model, folder)
    loaded = tf.saved_model.load(str(path))
    logits = serve_logits(loaded, ids)
    tolerance = max(SAVEDMODEL_TOLERANCE, SAVEDMODEL_RELATIVE * float(np.abs(reference).max()))
    compare_logits(check, "tf_saved_model_serve_logits", logits, reference, tolerance)
    signature = loaded.signatures.get("serving_default") if hasattr(
        loaded.signatures, "get") else loaded.signatures["serving_default"]
    check.check("serving_default_signature", signature is not None,
                "the SavedModel has a 'serving_default' signature for TF Serving")
    if signature is not None:
        out = signature(token_ids=tf.constant(ids, tf.int32),
                        padding_mask=tf.ones(ids.shape, tf.int32))
        served = np.asarray(next(iter(out.values())), dtype=np.float32)
        compare_logits(check, "serving_default_logits", served, reference, tolerance)
    check_carries_lora(
        check, "savedmodel_carries_lora", folder, logits, reference, base,
        lambda scratch: serve_logits(tf.saved_model.load(str(write_savedmodel(base.model,
                                                                             scratch))), ids))
    return path
