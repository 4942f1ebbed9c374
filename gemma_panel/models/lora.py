"""LoRA on a KerasHub model: enabling it with alpha, finding its layers, and its files.

KerasHub's ``backbone.enable_lora(rank, target_layer_names)`` puts LoRA on the named
``EinsumDense`` layers with alpha = rank; ``enable_lora`` here sets the recipe's alpha on each
of them too (Keras scales the update by ``lora_alpha / lora_rank``). Keras keeps a LoRA layer's
rank, alpha and factors as public attributes (``lora_enabled``, ``lora_rank``, ``lora_alpha``,
``lora_kernel_a``, ``lora_kernel_b``); finding the layers needs Keras's private
``_flatten_layers``, reached here (``sublayers``) and nowhere else.

On disk, KerasHub's ``save_lora_weights`` file (``adapter.lora.h5``) holds the factors and the
rank only. ``lora.json`` beside it holds what a loader needs besides: alpha, the target layer
names, the base model (``write_lora_adapter`` / ``load_lora_adapter``).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

LORA_FILE = "adapter.lora.h5"
LORA_CONFIG = "lora.json"


def _backbone(model):
    """The backbone of a causal LM, or the model itself (a backbone or one of its layers)."""
    return getattr(model, "backbone", model)


def sublayers(model, include_self: bool = False) -> list:
    """Every layer inside ``model`` (a causal LM, a backbone or a block), in Keras's order."""
    return list(_backbone(model)._flatten_layers(include_self=include_self))


def lora_layers(model) -> list:
    """The LoRA-enabled layers inside ``model`` (a causal LM, a backbone or a block)."""
    return [layer for layer in sublayers(model) if getattr(layer, "lora_enabled", False)]


def enable_lora(model, rank: int, alpha: float, target_layers, seed: int = 0) -> list:
    """Put LoRA of ``rank`` and ``alpha`` on the ``target_layers`` (names) of ``model``.

    Freezes every other weight (KerasHub's ``enable_lora``); returns the LoRA layers. The
    ``A`` factors start from He-uniform draws that depend on ``seed`` and the layer's place
    only: Keras's own draw takes its seed from Python's global ``random``, which anything
    running before (a library's retry jitter, another thread) moves, and an exact resume or
    a comparison of two runs must not depend on that. ``B`` starts at zero, as in Keras.

    Example:
        >>> enable_lora(lm, rank=8, alpha=16, target_layers=["query", "value"])
    """
    import keras

    _backbone(model).enable_lora(rank, target_layer_names=list(target_layers))
    layers = lora_layers(model)
    for index, layer in enumerate(layers):
        layer.lora_alpha = alpha
        factor = layer.lora_kernel_a
        draw = keras.initializers.HeUniform(seed=seed * 1_000_003 + index)
        factor.assign(draw(tuple(factor.shape), dtype=factor.dtype))
    return layers


def quantize_int8(model) -> None:
    """Keras's int8 weight quantization of every dense and embedding layer, before LoRA.

    The QLoRA recipe of Keras's guide: ``quantize("int8")`` then ``enable_lora``, so the
    factors are created in float32 beside int8 kernels and their scales. Keras
    warns for each layer that has nothing to quantize (norms, rotary); those are silenced.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Layer .* does not have a `quantize` method")
        _backbone(model).quantize("int8")


def lora_settings(model) -> dict | None:
    """Rank, alpha, target layer names and layer count of a LoRA model (None without LoRA)."""
    layers = lora_layers(model)
    if not layers:
        return None
    return {"rank": int(layers[0].lora_rank), "alpha": float(layers[0].lora_alpha),
            "target_layers": sorted({layer.name for layer in layers}),
            "layers": len(layers)}


@contextlib.contextmanager
def lora_switched_off(model):
    """Inside, the model computes as its base model (every LoRA B factor zero)."""
    saved = []
    for layer in lora_layers(model):
        saved.append((layer, np.asarray(layer.lora_kernel_b.value)))
        layer.lora_kernel_b.assign(np.zeros(layer.lora_kernel_b.shape, saved[-1][1].dtype))
    try:
        yield
    finally:
        for layer, value in saved:
            layer.lora_kernel_b.assign(value)


@contextlib.contextmanager
def lora_branch_off(layer):
    """Inside, one LoRA layer computes without its LoRA branch (Keras skips it), for a
    forward pass that adds the branch itself (``keras_internals.int8_lora_forward``)."""
    layer.lora_enabled = False
    try:
        yield
    finally:
        layer.lora_enabled = True


def write_lora_adapter(lm, folder: str | Path, base_model: str | None) -> dict:
    """Write ``adapter.lora.h5`` (KerasHub's factors and rank) and ``lora.json``; return the
    latter's content. ``base_model`` is the base model's source, for whoever loads it."""
    import keras_hub

    folder = Path(folder)
    settings = lora_settings(lm)
    if settings is None:
        raise ValueError("the model has no LoRA layers to write")
    lm.backbone.save_lora_weights(str(folder / LORA_FILE))
    config = {**settings, "base_model": base_model, "backbone_class":
              type(lm.backbone).__name__, "keras_hub_version": keras_hub.__version__,
              "weights": LORA_FILE}
    (folder / LORA_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return config


def load_lora_adapter(base_lm, folder: str | Path):
    """Put an exported LoRA adapter (``adapter.lora.h5`` + ``lora.json``) on a base model.

    Example:
        >>> lm = load_model("gemma3-270m")
        >>> load_lora_adapter(lm, "runs/my-run/exports/lora-step000100")
    """
    folder = Path(folder)
    config = json.loads((folder / LORA_CONFIG).read_text())
    # the .lora.h5 keeps the rank, not alpha: alpha comes from lora.json
    enable_lora(base_lm, config["rank"], config["alpha"], config["target_layers"])
    base_lm.backbone.load_lora_weights(str(folder / config.get("weights", LORA_FILE)))
    return base_lm

