"""Model FLOPs of training a Gemma on a set of examples, counted from the model and the data.

Only matrix multiplications are counted (norms, RoPE, softmax and the optimizer are a few %
at most). For each example of ``n`` real tokens with ``m`` loss tokens, in each layer:

* forward: ``2 * P * n`` for the layer's projections (``P`` multiply-adds per token: query,
  key, value, output, gate, up, down), plus attention, ``4 * H * h`` per query and key it
  attends (scores and the weighted sum; causal, and within the window of a sliding-window
  layer);
* backward: the input gradients, the same again for the projections and twice the
  attention's; weight gradients only for what is trained: the LoRA matrices (their forward
  costs ``2 * r * (in + out)`` per token, and three times that with both gradients), or every
  projection under full fine-tuning;
* the LM head, ``2 * d * V`` per loss token forward and again backward (plus its weight
  gradient under full fine-tuning): "useful" FLOPs count the head at loss positions only,
  whatever a trainer computes.

The same count serves every trainer given the same data, so MFU compares their speed on the
work that the training needs. Keras merges LoRA into the kernel (``W + (alpha/r) A B``), so
its backward pass also computes the adapted kernels' full weight gradient; that is an
implementation's cost, not counted as useful work (our train step goes through the rank).
The planner's time estimate (``gemma_panel.planning``) uses the same count.

MFU, nanoGPT-style: ``MfuMeter`` counts each step's FLOPs from its packed rows (every
segment an example) and divides by the step time and by the peak measured on this machine
(``measured_peak``: a short matmul timing in the compute dtype, cached in GEMMA_PANEL_HOME).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass

import numpy as np

PEAK_FILE = "peak_flops.json"
_PEAK_SIZE = 2048


@dataclass(frozen=True)
class Shape:
    """What the count needs from a KerasHub Gemma backbone."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    windows: tuple[int | None, ...]  # per layer: sliding window size, or None (global)
    lora_per_token: int  # multiply-adds per token of all LoRA matrices (0: none)

    @classmethod
    def of(cls, backbone) -> Shape:
        """The count's shape from a loaded KerasHub Gemma backbone (its LoRA as enabled)."""
        from gemma_panel.models.lora import lora_layers

        windows = tuple(layer.sliding_window_size
                        if getattr(layer, "use_sliding_window_attention", False) else None
                        for layer in backbone.transformer_layers)
        lora = sum(lora_macs(layer) for layer in lora_layers(backbone))
        return cls(backbone.hidden_dim, backbone.num_query_heads,
                   backbone.num_key_value_heads, backbone.head_dim, backbone.intermediate_dim,
                   backbone.vocabulary_size, windows, lora)

    @classmethod
    def of_spec(cls, spec, rank: int = 0, targets=()) -> Shape:
        """The count's shape from a registry entry (every layer global: an upper bound for
        the sliding-window layers), with LoRA of ``rank`` on ``targets`` (0: none)."""
        shape = cls(spec.hidden_dim, spec.num_query_heads, spec.num_key_value_heads,
                    spec.head_dim, spec.intermediate_dim, spec.vocab_size,
                    (None,) * spec.num_layers, 0)
        per_layer = sum(shape.lora_target_macs(t) for t in targets) * rank
        return dataclasses.replace(shape, lora_per_token=per_layer * spec.num_layers)

    def lora_target_macs(self, target: str) -> int:
        """Multiply-adds per token per unit of rank of one LoRA branch (``lora_macs``'s
        count from the shape alone): A over the kernel's input, B once per output head."""
        d, h, q, kv, f = self.hidden, self.head_dim, self.heads, self.kv_heads, self.ffn
        return {"query": q * (d + h), "key": kv * (d + h), "value": kv * (d + h),
                "attention_output": q * h + d, "ffw_gating": d + f, "ffw_gating_2": d + f,
                "ffw_linear": f + d}[target]

    def lora_target_params(self, target: str) -> int:
        """LoRA parameters per unit of rank of one branch in one layer (A and B)."""
        d, h, q, kv, f = self.hidden, self.head_dim, self.heads, self.kv_heads, self.ffn
        return {"query": q * d + h, "key": kv * d + h, "value": kv * d + h,
                "attention_output": q * h + d, "ffw_gating": d + f, "ffw_gating_2": d + f,
                "ffw_linear": f + d}[target]


    @property
    def projections(self) -> int:
        """Multiply-adds per token of one layer's projections."""
        d, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return d * q + 2 * d * kv + q * d + 3 * d * self.ffn


def lora_macs(layer) -> int:
    """Multiply-adds per token of a LoRA branch ``(x A) B``, unmerged.

    Keras's A is the kernel's shape with its last axis replaced by the rank and B is
    (rank, last axis): an EinsumDense whose output keeps a heads axis applies B once per head.
    """
    a, b = layer.lora_kernel_a.shape, layer.lora_kernel_b.shape
    per_token = b[-1]  # a Dense's output
    if getattr(layer, "equation", None):  # e.g. "btd,ndh->btnh": the output keeps n and h
        inputs, out = layer.equation.split("->")
        kernel_axes = inputs.split(",")[1]
        per_token = math.prod(size for axis, size in zip(kernel_axes, layer._kernel.shape)
                              if axis in out)
    return math.prod(a) + math.prod(b) * (per_token // b[-1])


def attended(n: int, window: int | None) -> int:
    """Query-key pairs of causal attention over ``n`` tokens (within ``window``)."""
    if window is None or window >= n:
        return n * (n + 1) // 2
    return window * (window + 1) // 2 + (n - window) * window


def training_flops(shape: Shape, examples: list[tuple[int, int]], full: bool = False) -> float:
    """FLOPs of one forward and backward pass over ``examples``: (real tokens, loss tokens)."""
    layers, total = len(shape.windows), 0.0
    for n, m in examples:
        proj = 2 * shape.projections * n * layers
        attn = 4 * shape.heads * shape.head_dim * sum(attended(n, w) for w in shape.windows)
        head = 2 * shape.hidden * shape.vocab * m
        total += proj + attn + head  # forward
        total += proj + 2 * attn + head  # input gradients
        if full:
            total += proj + head  # weight gradients of every projection and the head
        else:
            total += 3 * 2 * shape.lora_per_token * n  # LoRA: forward and both gradients
    return total


def packed_examples(segment_ids, loss_mask) -> list[tuple[int, int]]:
    """(real tokens, loss tokens) of every example in packed rows (segment 0 is padding)."""
    segments = np.asarray(segment_ids).reshape(-1, np.shape(segment_ids)[-1])
    mask = np.asarray(loss_mask).reshape(segments.shape)
    examples = []
    for row, row_mask in zip(segments, mask):
        ids = np.unique(row[row > 0])
        examples += [(int((row == i).sum()), int(row_mask[row == i].sum())) for i in ids]
    return examples


def _machine_key(dtype: str) -> str:
    import jax

    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{device.platform}/{device.device_kind}/{cpu}/{os.cpu_count()} cpus/{dtype}/"
            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}")


def time_matmul_peak(dtype: str = "float32", size: int = _PEAK_SIZE, repeats: int = 5) -> float:
    """FLOP/s of the fastest of ``repeats`` (size x size) matmuls on the first device."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), dtype)
    f = jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32))
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def measured_peak(dtype: str = "float32", home=None) -> tuple[float, bool]:
    """(peak FLOP/s of one device in ``dtype``, whether it came from the cache).

    Timed once per machine, dtype and XLA_FLAGS (about a second) and kept in
    ``<GEMMA_PANEL_HOME>/peak_flops.json``; delete the file to measure again.
    """
    from gemma_panel.home import home_dir

    path = (home or home_dir()) / PEAK_FILE
    key = _machine_key(dtype)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), (int, float)):
        return float(cache[key]), True
    cache[key] = time_matmul_peak(dtype)
    path.write_text(json.dumps(cache, indent=1))
    return cache[key], False


class MfuMeter:
    """Model FLOP utilisation of train steps: counted FLOPs / step time / measured peak."""

    def __init__(self, shape: Shape, full: bool, peak_flops: float, devices: int = 1):
        self.shape, self.full = shape, full
        self.peak = peak_flops * devices

    @classmethod
    def for_model(cls, backbone, full: bool, dtype: str = "float32", devices: int = 1):
        peak, _ = measured_peak(dtype)
        return cls(Shape.of(backbone), full, peak, devices)

    def step_flops(self, segment_ids, loss_mask) -> float:
        return training_flops(self.shape, packed_examples(segment_ids, loss_mask), self.full)

    def mfu(self, segment_ids, loss_mask, seconds: float) -> float:
        """The share of the peak one step of these rows used in ``seconds``."""
        return self.step_flops(segment_ids, loss_mask) / max(seconds, 1e-9) / self.peak
