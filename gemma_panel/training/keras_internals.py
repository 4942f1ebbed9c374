"""The KerasHub and Keras internals the train step patches while tracing, and their check.

Two things the train step needs have no public API, so they are patched for the duration
of one trace and put back after:

* ``segment_attention``: packed examples must not see each other. KerasHub's Gemma decoder
  blocks build their causal + padding mask in the private ``_compute_attention_mask`` (called
  from ``call``); it is wrapped to intersect that mask with a same-segment mask.
* ``lora_factored``: Keras's ``EinsumDense`` computes LoRA merged into its kernel
  (``kernel = _kernel + (lora_alpha / lora_rank) A B``): every call a full-size matmul, and
  in the backward pass a full-size kernel gradient, per adapted weight; nor can it drop the
  branch's input (LoRA dropout). Its ``call(inputs, training=None)`` is replaced by
  ``x W + (alpha/r) (dropout(x) A) B`` over ``equation``, ``_kernel``, the factors, ``bias``
  and ``activation``: the branch goes through the rank.
  An int8 layer (``memory.base_weights: int8``) is called through ``quantized_call``, so
  that is replaced instead, by Keras's ``_int8_call`` with LoRA off plus the branch.

One more is not a patch: ``store_value`` puts an array of another dtype into a Keras
variable as its value (``_direct_assign``; ``assign`` would cast it back), so that a frozen
weight kept in bfloat16 (``memory.base_weights``) exists once, not also in float32.

Written against keras-hub 0.32.x and keras 3.15.x. Before patching, ``require_internals``
checks the names the patches rely on and raises ``KerasInternalsChanged`` (naming what is
missing and both versions) rather than train with a silently wrong mask or forward pass;
another version that still has them gets one warning. tests/training/test_keras_internals.py
checks the patched forward passes against KerasHub's own on a tiny model.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings

import jax
import jax.numpy as jnp
import keras

from gemma_panel.models.lora import lora_branch_off

WRITTEN_FOR = {"keras_hub": "0.32.", "keras": "3.15."}
MASK_METHOD = "_compute_attention_mask"  # on each of backbone.transformer_layers
LORA_ATTRIBUTES = ("equation", "_kernel", "bias", "activation", "lora_rank", "lora_alpha",
                   "lora_kernel_a", "lora_kernel_b")
LORA_CALL_PARAMETERS = ("self", "inputs", "training")  # EinsumDense.call, replaced whole
_warned: set[tuple[str, ...]] = set()


class KerasInternalsChanged(RuntimeError):
    """The installed KerasHub/Keras no longer has what the train step patches."""


def installed_versions() -> dict[str, str]:
    import keras
    import keras_hub

    return {"keras_hub": keras_hub.__version__, "keras": keras.__version__}


def _versions_text(installed: dict[str, str]) -> str:
    return (f"gemma_panel's train step was written against keras-hub {WRITTEN_FOR['keras_hub']}x "
            f"and keras {WRITTEN_FOR['keras']}x; installed: keras-hub {installed['keras_hub']}, "
            f"keras {installed['keras']}")


def internals_missing(blocks, lora_layers) -> list[str]:
    """What the patches need and these decoder blocks / LoRA layers lack (empty: all there)."""
    missing = [f"{type(block).__name__}.{MASK_METHOD}" for block in blocks
               if not callable(getattr(block, MASK_METHOD, None))]
    for layer in lora_layers:
        kind = type(layer).__name__
        missing += [f"{kind}.{name}" for name in LORA_ATTRIBUTES if not hasattr(layer, name)]
        method = "_int8_call" if _quantized(layer) else "call"
        if _quantized(layer) and layer.quantization_mode != "int8":
            missing.append(f"{kind}: LoRA dropout on {layer.quantization_mode} weights")
            continue
        parameters = tuple(inspect.signature(getattr(type(layer), method)).parameters)
        if parameters != LORA_CALL_PARAMETERS:
            missing.append(f"{kind}.{method}{LORA_CALL_PARAMETERS} (it is {method}{parameters})")
    return sorted(set(missing))


def require_internals(blocks=(), lora_layers=()) -> None:
    """Raise ``KerasInternalsChanged`` if a patched name is gone; warn once on other versions."""
    installed = installed_versions()
    missing = internals_missing(blocks, lora_layers)
    if missing:
        raise KerasInternalsChanged(
            f"{_versions_text(installed)}, which lacks {', '.join(missing)}. Install "
            f"keras-hub=={WRITTEN_FOR['keras_hub']}* and keras=={WRITTEN_FOR['keras']}*, or "
            "update gemma_panel/training/keras_internals.py.")
    off = [name for name, prefix in WRITTEN_FOR.items() if not installed[name].startswith(prefix)]
    if off and tuple(off) not in _warned:
        _warned.add(tuple(off))
        warnings.warn(f"{_versions_text(installed)}; the patched names are present, and "
                      "tests/training/test_keras_internals.py says whether they still "
                      "behave the same.", RuntimeWarning, stacklevel=3)


def segment_mask(segment_ids):
    """(batch, length, length) int32: 1 where query and key are in the same real segment."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return (same & (segment_ids[:, None, :] > 0)).astype("int32")


@contextlib.contextmanager
def segment_attention(backbone, segment_ids):
    """Keep packed examples apart: each token attends only within its own segment.

    While tracing, each decoder block's causal + padding mask is intersected with a
    same-segment mask; KerasHub's layers do the rest.
    """
    blocks = list(backbone.transformer_layers)
    require_internals(blocks=blocks)
    mask = segment_mask(segment_ids)
    originals = []
    for block in blocks:
        original = getattr(block, MASK_METHOD)

        def combined(*args, _original=original, **kwargs):
            return jnp.minimum(_original(*args, **kwargs).astype("int32"), mask)

        originals.append((block, original))
        setattr(block, MASK_METHOD, combined)
    try:
        yield
    finally:
        for block, original in originals:
            setattr(block, MASK_METHOD, original)


def factored_equations(equation: str) -> tuple[str, str]:
    """``x K -> y`` as two einsums through the rank: ``x A -> m`` then ``m B -> y``.

    Keras's A is the kernel's shape with its last axis replaced by the rank, and B is
    (rank, last axis); e.g. ``btd,ndh->btnh`` gives ``btd,ndr->btnr`` and ``btnr,rh->btnh``.
    Needs the kernel's last axis in the output (true of every Gemma projection).
    """
    inputs, out = equation.replace(" ", "").split("->")
    x_axes, k_axes = inputs.split(",")
    last = k_axes[-1]
    rank = next(c for c in "rzyxwvuqponmlkjigfecba" if c not in equation)
    if last not in out or "." in equation:
        raise KerasInternalsChanged(f"cannot factor the LoRA of an EinsumDense with "
                                    f"equation {equation!r}: its kernel's last axis is summed")
    middle = out.replace(last, rank)
    return (f"{x_axes},{k_axes[:-1]}{rank}->{middle}", f"{middle},{rank}{last}->{out}")


def lora_forward(layer, inputs, dropped):
    """``EinsumDense.call`` with LoRA factored: ``inputs W + (alpha/r) (dropped A) B``.

    Keras forms ``W + (alpha/r) A B`` every call: a full-size matmul, and in the backward pass
    a full-size kernel gradient, per adapted weight. Through the rank, the branch costs
    ``r (in + out)`` multiply-adds per token and its gradients are the factors' only.
    """
    to_rank, from_rank = factored_equations(layer.equation)
    scale = layer.lora_alpha / layer.lora_rank
    out = jnp.einsum(layer.equation, inputs, layer._kernel.value.astype(inputs.dtype))
    low = jnp.einsum(to_rank, dropped, layer.lora_kernel_a.value.astype(inputs.dtype))
    low = jnp.einsum(from_rank, low, layer.lora_kernel_b.value.astype(inputs.dtype))
    out = out + (scale * low).astype(out.dtype)
    if layer.bias is not None:
        out = out + layer.bias.value
    return out if layer.activation is None else layer.activation(out)


def merged_forward(layer, inputs, dropped):
    """The previous path with dropout: ``inputs W + dropped (alpha/r) A B`` (a full-size
    ``A B`` and its gradient per call, as Keras's merged kernel costs)."""
    delta = (layer.lora_alpha / layer.lora_rank) * jnp.matmul(layer.lora_kernel_a.value,
                                                              layer.lora_kernel_b.value)
    out = jnp.einsum(layer.equation, inputs, layer._kernel.value.astype(inputs.dtype))
    out = out + jnp.einsum(layer.equation, dropped, delta.astype(inputs.dtype))
    if layer.bias is not None:
        out = out + layer.bias.value
    return out if layer.activation is None else layer.activation(out)


def int8_lora_forward(layer, inputs, dropped):
    """An int8 layer's forward with its LoRA branch on ``dropped``: Keras's own int8 matmul
    (``_int8_call``, LoRA switched off for it) plus ``(alpha/r) dropped A B``."""
    if layer.activation not in (None, keras.activations.linear):  # added after it
        raise KerasInternalsChanged(f"{layer.name}: LoRA dropout on an int8 layer with an "
                                    "activation; set lora.dropout=0 or memory.base_weights.")
    with lora_branch_off(layer):
        out = layer._int8_call(inputs)
    branch = jnp.einsum(layer.equation, dropped, layer.lora_kernel_a.value)
    branch = jnp.matmul(branch, layer.lora_kernel_b.value)
    return out + (layer.lora_alpha / layer.lora_rank) * branch.astype(out.dtype)


def _quantized(layer) -> bool:
    return getattr(layer, "quantization_mode", None) is not None


@contextlib.contextmanager
def _patched_calls(layers, rate: float, key, forward):
    """While tracing, each LoRA layer's ``call`` is ``forward(layer, x, dropout(x))``."""
    require_internals(lora_layers=layers)
    dropping = rate > 0 and key is not None
    patched = []
    for i, layer in enumerate(layers):
        layer_key = jax.random.fold_in(key, i) if dropping else None

        # Keras calls a quantized layer's quantized_call, not its call
        name, layer_forward = ("quantized_call", int8_lora_forward) if _quantized(layer) \
            else ("call", forward)

        def call(inputs, *args, _layer=layer, _key=layer_key, _forward=layer_forward,
                 **kwargs):
            dropped = inputs
            if _key is not None:
                keep = jax.random.bernoulli(_key, 1.0 - rate, inputs.shape)
                dropped = jnp.where(keep, inputs / (1.0 - rate), 0).astype(inputs.dtype)
            return _forward(_layer, inputs, dropped)

        patched.append((layer, name, getattr(layer, name)))
        setattr(layer, name, call)
    try:
        yield
    finally:
        for layer, name, original in patched:
            setattr(layer, name, original)


def lora_factored(layers, rate: float = 0.0, key=None):
    """While tracing, each LoRA EinsumDense computes ``x W + (alpha/r) (dropout(x) A) B``.

    Dropout (``rate`` > 0 and a ``key``) drops the LoRA branch's input only, which Keras's
    merged kernel cannot express; without it the branch takes ``x`` itself.
    """
    if not layers:
        return contextlib.nullcontext()
    return _patched_calls(layers, rate, key, lora_forward)


def lora_merged_kernel(layers, rate: float = 0.0, key=None):
    """The previous path, kept selectable for ``benchmarks/train_throughput.py``'s ablation:
    Keras's own merged kernel ``W + (alpha/r) A B``, or with dropout ``merged_forward``."""
    if rate <= 0 or key is None or not layers:
        return contextlib.nullcontext()
    return _patched_calls(layers, rate, key, merged_forward)


def store_value(variable, value) -> None:
    """Make ``value`` the variable's stored value as it is, in its own dtype.

    The variable keeps its dtype: inside a ``StatelessScope`` (the train step, generation)
    Keras casts the value to it as it computes, so the arithmetic is that of the rounded
    weights; outside one, ``variable.value`` is ``value`` itself.
    """
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f"{variable.path}: a value of shape {value.shape} for a variable "
                         f"of shape {variable.shape}")
    variable._direct_assign(value)
