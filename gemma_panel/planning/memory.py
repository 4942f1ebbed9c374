"""Memory per device before anything runs: what a recipe's training holds, part by part.

The parts follow what the train step (training/step.py) keeps alive at its peak:

* weights: every parameter at the recipe's precision (float32 and mixed_bfloat16 keep
  float32 variables, bfloat16 keeps 2 bytes), or as ``memory.base_weights`` stores LoRA's
  frozen base: int8 is 1 byte a matrix weight plus a float32 scale per output channel
  (norms stay float32), and the step dequantizes the tied embedding to float32 for the head;
  bfloat16 rounds the frozen weights once into the model's own variables (no float32
  copy is kept; training/step.store_frozen_in), and the head widens the tied embedding
  to float32 one vocabulary chunk at a time (two chunks are alive at once: the one in use
  and the next; training/step.narrow_head_terms);
* trainable: the LoRA factors (or, under full fine-tuning, every weight again: the step
  copies the trainable values it donates), with AdamW's two moments and the gradients
  (the accumulated sum and one micro-batch's), all at the weights' precision;
* activations: what the backward pass needs of one micro-batch (``train.batch_size``
  sequences of ``data.sequence_length``; accumulation does not add any): per token and
  layer the block's inputs, norms, query/key/value, attention scores and probabilities, and
  the feed-forward's four ``intermediate_dim``-wide tensors. With ``memory.remat`` each
  block runs under ``jax.checkpoint`` (training/remat.py): only every block's input is
  kept, and one block's tensors at a time while its backward pass recomputes them; on
  CPU it saves nothing (XLA's CPU compile keeps the same temporaries either way: the tiny
  model's compiled temporaries are equal, the 270M's peak at seq 256, batch 4 is 6261 MiB
  with it and 6296 MiB without), so there the estimate and the remedies leave it out;
* LM-head logits: loss positions x vocabulary x 4 bytes, kept whole for the backward pass
  when they fit in ``REMAT_LOGITS_BYTES`` (``FUSED_LOGITS_BYTES`` for LoRA's frozen float32
  embedding), otherwise 128 positions at a time (recomputed, or fused: training/head.py);
  the positions are batches.py's bound (a micro-batch's loss tokens, rounded up to 128);
* runtime: the process itself (Python, JAX, Keras: measured on CPU), XLA's temporaries,
  and on CPU the freed buffers of the weights' import, which stay resident.

Under ``data_parallel`` the batch is split over the devices; under ``fsdp`` the weights,
factors and moments are too (plus one gathered layer and the gathered embedding for the
head); under ``model_parallel`` weights and the head/feed-forward activations are split.
``benchmarks/memory_estimate.py`` prints these estimates beside measured peaks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from gemma_panel.training.flops import Shape

GIB = 2**30
# From training/step.py (not imported: that module needs JAX and optax at import).
REMAT_LOGITS_BYTES = 4 << 30
FUSED_LOGITS_BYTES = 1 << 30  # a frozen float32 embedding's head (training/step.py)
HEAD_CHUNK = 128
VOCAB_CHUNK, MIN_VOCAB_CHUNKS = 8192, 8  # step.vocab_chunk_rows
# Tensors the backward pass keeps per token and layer, in units of each width: counted
# from the block (10 hidden-wide, 3 query-wide, 4 key/value-wide, 4 feed-forward-wide, 2
# score rows), then scaled to the peaks measured on CPU (benchmarks/memory_estimate.py:
# XLA keeps 1.1-2x the count, and 3 score rows: scores, masked scores, probabilities).
HIDDEN_COPIES, QUERY_COPIES, KV_COPIES, FFN_COPIES, SCORE_COPIES = 15, 5, 6, 6, 3
# Logits kept for the backward pass (XLA fuses the softmax's exponentials; measured).
LOGIT_COPIES = 1
# On CPU the weights' import leaves this many weight-sizes of freed buffers resident (the
# allocator keeps them; measured: the 270M's peak is 2.3x its weights above the rest).
CPU_LOADING_RESIDUE = 1.3
# What a training process holds beside the model: Python, JAX, Keras, KerasHub,
# TensorFlow's import, XLA's compiler (measured on CPU: the intercept of the fit).
CPU_RUNTIME_BYTES = 1360 * 2**20
ACCELERATOR_RUNTIME_BYTES = 512 * 2**20
XLA_TEMPORARY_SHARE = 0.05
# Badge thresholds: a share of the device's memory.
TIGHT_SHARE, FULL_SHARE = 0.85, 1.0


@dataclass(frozen=True)
class TrainingShape:
    """What the estimate needs from a recipe (see ``training_shape``)."""

    dtype: str = "float32"
    sequence_length: int = 256
    batch_size: int = 4
    lora: bool = True
    rank: int = 8
    targets: tuple[str, ...] = ("query", "value")
    answer_share: float = 0.5  # share of sequence positions that carry loss
    base_weights: str = "float32"  # memory.base_weights (LoRA's frozen base)
    remat: bool = False  # memory.remat


def training_shape(recipe, answer_share: float = 0.5) -> TrainingShape:
    """The estimate's inputs from a recipe; ``answer_share`` from the data's statistics."""
    return TrainingShape(recipe.model.dtype, recipe.data.sequence_length,
                         recipe.train.batch_size, recipe.lora.enabled, recipe.lora.rank,
                         tuple(recipe.lora.target_layers), answer_share,
                         recipe.memory.base_weights, recipe.memory.remat)


@dataclass(frozen=True)
class ModelSize:
    """Parameter count and transformer shape (``Shape`` of flops.py plus the totals)."""

    params: int
    layers: int
    shape: Shape

    @classmethod
    def of_spec(cls, spec) -> ModelSize:
        return cls(spec.params, spec.num_layers, Shape.of_spec(spec))

    @classmethod
    def of_backbone(cls, backbone) -> ModelSize:
        shape = dataclasses.replace(Shape.of(backbone), lora_per_token=0)
        return cls(int(backbone.count_params()), len(shape.windows), shape)

    @property
    def norm_params(self) -> int:
        """The norms' scales (pre/post attention and feed-forward, query/key, final)."""
        return self.layers * (4 * self.shape.hidden + 2 * self.shape.head_dim) \
            + self.shape.hidden

    @property
    def int8_scales(self) -> int:
        """Keras's int8 scales: one per output channel of each matrix, one per vocab row."""
        s = self.shape
        per_layer = (s.heads + 2 * s.kv_heads) * s.head_dim + 2 * s.hidden + 2 * s.ffn
        return self.layers * per_layer + s.vocab

    def lora_params(self, rank: int, targets) -> int:
        return self.layers * rank * sum(self.shape.lora_target_params(t) for t in targets)


@dataclass
class MemoryEstimate:
    """Bytes per device by part, the total, and how it compares with the device."""

    strategy: str
    devices: int
    parts: dict[str, int]
    capacity: int | None
    remedies: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def badge(self) -> str:
        """``fits``, ``tight`` (over 85% of the device), ``does not fit`` or ``unknown``."""
        if not self.capacity:
            return "unknown"
        share = self.total / self.capacity
        return "fits" if share <= TIGHT_SHARE else "tight" if share <= FULL_SHARE \
            else "does not fit"

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "devices": self.devices, "parts": self.parts,
                "total": self.total, "capacity": self.capacity, "badge": self.badge,
                "remedies": self.remedies}


def weight_bytes(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else 4


def activation_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def base_weight_parts(model: ModelSize, run: TrainingShape) -> dict[str, int]:
    """The frozen and trained weights as ``memory.base_weights`` stores them (unsplit)."""
    wb = weight_bytes(run.dtype)
    mode = run.base_weights if run.lora else "float32"
    if mode == "int8":
        matrices = model.params - model.norm_params
        return {"weights": matrices + 4 * (model.norm_params + model.int8_scales),
                "dequantized embedding": model.shape.vocab * model.shape.hidden * 4}
    if mode == "bfloat16" and wb == 4:
        return {"weights": model.params * 2,
                "float32 embedding chunks for the head": widened_chunk_bytes(model)}
    return {"weights": model.params * wb}


def widened_chunk_bytes(model: ModelSize) -> int:
    """The bfloat16 head's float32 copies: two chunks of ``step.vocab_chunk_rows`` rows."""
    vocab = model.shape.vocab
    rows = max(1, min(VOCAB_CHUNK, -(-vocab // MIN_VOCAB_CHUNKS)))
    return 2 * rows * model.shape.hidden * 4


def estimate_memory(model: ModelSize, run: TrainingShape, backend: str = "cpu",
                    capacity: int | None = None, strategy: str = "single",
                    devices: int = 1) -> MemoryEstimate:
    """Peak bytes on one device for training ``model`` as ``run`` says.

    Args:
        backend: ``cpu`` (the process's runtime counts), ``gpu`` or ``tpu``.
        capacity: one device's memory in bytes (None: no badge).
        strategy: ``single``, ``data_parallel``, ``fsdp`` or ``model_parallel``.
        devices: devices the strategy spreads over (``single``: 1).
    """
    n = 1 if strategy == "single" else max(1, devices)
    split_weights = n if strategy in ("fsdp", "model_parallel") else 1
    split_batch = n if strategy in ("data_parallel", "fsdp") else 1
    wb = weight_bytes(run.dtype)
    trainable = model.lora_params(run.rank, run.targets) if run.lora else model.params
    parts = {name: size // split_weights for name, size in base_weight_parts(model, run).items()}
    parts |= {
        "trainable copy": trainable * wb // split_weights,
        "optimizer (AdamW, 2 moments)": 2 * trainable * wb // split_weights,
        "gradients": 2 * trainable * wb // split_weights,
    }
    if strategy == "fsdp" and n > 1:  # gathered per use: the largest layer and the head
        parts["gathered weights"] = max(model.params // model.layers,
                                        model.shape.vocab * model.shape.hidden) * wb
    rows = max(1, math.ceil(run.batch_size / split_batch))
    kept = run if backend != "cpu" else dataclasses.replace(run, remat=False)
    parts["activations"] = _activations(model, kept, rows, n if strategy == "model_parallel"
                                        else 1)
    parts["LM-head logits"] = _logits(model, run, rows, n if strategy == "model_parallel"
                                      else 1)
    subtotal = sum(parts.values())
    parts["XLA temporaries"] = int(XLA_TEMPORARY_SHARE * subtotal)
    if backend == "cpu":
        parts["loading residue"] = int(CPU_LOADING_RESIDUE * model.params * wb)  # as loaded
    parts["runtime"] = CPU_RUNTIME_BYTES if backend == "cpu" else ACCELERATOR_RUNTIME_BYTES
    return MemoryEstimate(strategy, n, parts, capacity)


def _activations(model: ModelSize, run: TrainingShape, rows: int, split: int) -> int:
    s = model.shape
    tokens = rows * run.sequence_length
    replicated = HIDDEN_COPIES * s.hidden
    sharded = (QUERY_COPIES * s.heads * s.head_dim + KV_COPIES * s.kv_heads * s.head_dim
               + FFN_COPIES * s.ffn + SCORE_COPIES * s.heads * run.sequence_length)
    per_token = replicated + sharded / split
    if run.remat:  # every block's input, and one block's tensors while it is recomputed
        per_token = per_token + (model.layers - 1) * s.hidden
        return int(tokens * per_token * activation_bytes(run.dtype))
    return int(tokens * model.layers * per_token * activation_bytes(run.dtype))


def loss_positions(run: TrainingShape, rows: int) -> int:
    """The head's fixed count of loss positions per micro-batch, as batches.py rounds it."""
    worst = math.ceil(rows * run.sequence_length * min(1.0, run.answer_share))
    return max(HEAD_CHUNK, -(-worst // HEAD_CHUNK) * HEAD_CHUNK)


def _logits(model: ModelSize, run: TrainingShape, rows: int, split: int) -> int:
    positions = loss_positions(run, rows)
    vocab = model.shape.vocab // split
    whole = positions * vocab * 4
    fused = run.lora and run.base_weights != "bfloat16" and run.dtype == "float32"
    if positions * model.shape.vocab * 4 <= (FUSED_LOGITS_BYTES if fused
                                             else REMAT_LOGITS_BYTES):
        return LOGIT_COPIES * whole
    return LOGIT_COPIES * HEAD_CHUNK * vocab * 4 + positions * model.shape.hidden * 4


def strategies_for(devices: int) -> tuple[str, ...]:
    return ("single",) if devices <= 1 else ("data_parallel", "fsdp", "model_parallel")


def with_remedies(model: ModelSize, run: TrainingShape, estimate: MemoryEstimate,
                  backend: str, share_cut=None) -> MemoryEstimate:
    """The estimate with the changes that make it fit, cheapest in quality first.

    The changes add up: each remedy's figure includes the ones listed before it, and the
    list stops at the first that fits. One that would not lower the figure is left out.
    ``share_cut(length)`` (from the data) says what share of
    examples a shorter sequence length would cut.
    """
    if estimate.badge in ("fits", "unknown"):
        return estimate
    strategy, total = estimate.strategy, estimate.total
    for words, change in _remedy_steps(run, estimate.devices, share_cut, backend):
        changed, changed_strategy = change(run, strategy)
        after = estimate_memory(model, changed, backend, estimate.capacity, changed_strategy,
                                estimate.devices)
        if after.total >= total:
            continue
        run, strategy, total = changed, changed_strategy, after.total
        estimate.remedies.append(f"{words}: {after.total / GIB:.1f} GiB, {after.badge}")
        if after.badge != "does not fit":
            return estimate
    estimate.remedies.append("else a smaller model (model.source): the largest quality cost")
    return estimate


def _remedy_steps(run: TrainingShape, devices: int, share_cut, backend: str = "gpu"):
    """(words, change) pairs in the order of their cost in quality (remat: not on CPU,
    where it saves nothing)."""
    for smaller in sorted({max(1, run.batch_size // 4), 1}, reverse=True):
        if smaller < run.batch_size:
            words = (f"train.batch_size={smaller} with train.gradient_accumulation "
                     f"x{run.batch_size // smaller} (the same effective batch: no quality "
                     "cost, slower)")
            yield words, lambda r, s, b=smaller: (dataclasses.replace(r, batch_size=b), s)
    if devices > 1:
        yield ("distribution.strategy=fsdp (weights and optimizer split over the devices: no "
               "quality cost, some speed)"), lambda r, s: (r, "fsdp")
    if not run.remat and backend != "cpu":
        yield ("then memory.remat=true (each block recomputed in the backward pass: no "
               "quality cost, about 30% slower)"), lambda r, s: (dataclasses.replace(
                   r, remat=True), s)
    if run.dtype == "float32":
        yield ("then model.dtype=mixed_bfloat16 (half the activation memory, a tiny "
               "precision cost)"), lambda r, s: (dataclasses.replace(r, dtype="mixed_bfloat16"),
                                                 s)
    if run.lora and run.base_weights == "float32" and run.dtype != "bfloat16":
        yield ("then memory.base_weights=bfloat16 (frozen base weights in half the memory: "
               "the loss moves by about 0.01%)"), \
            lambda r, s: (dataclasses.replace(r, base_weights="bfloat16"), s)
    if run.lora and run.base_weights != "int8":
        yield ("then memory.base_weights=int8 (frozen base weights in a quarter of the "
               "memory, the QLoRA recipe: the loss moves by about 1%)"), \
            lambda r, s: (dataclasses.replace(r, base_weights="int8"), s)
    if run.dtype != "bfloat16":
        yield ("then model.dtype=bfloat16 (weights in 2 bytes, a small precision cost)",
               lambda r, s: (dataclasses.replace(r, dtype="bfloat16"), s))
    length = run.sequence_length
    while length > 256:
        length //= 2
        cut = f", cutting {share_cut(length):.0%} of examples" if share_cut else ""
        yield (f"then data.sequence_length={length} (long examples lose their ends{cut})",
               lambda r, s, n=length: (dataclasses.replace(r, sequence_length=n), s))


def out_of_memory_remedies(model: ModelSize, run: TrainingShape, backend: str,
                           capacity: int | None, strategy: str = "single",
                           devices: int = 1) -> list[str]:
    """What to change after a run died of memory exhaustion: ``with_remedies``' list for a
    device that did not hold this run, whatever the estimate said (the run is the
    measurement: the capacity is taken as the smaller of the device's and the estimate's)."""
    estimate = estimate_memory(model, run, backend, None, strategy, devices)
    held = int(estimate.total * TIGHT_SHARE)  # below the estimate: it did not fit
    estimate.capacity = min(capacity, held) if capacity else held
    return with_remedies(model, run, estimate, backend).remedies


def size_of_hf_config(config: dict) -> ModelSize:
    """A Gemma's size from a Hugging Face ``config.json`` (a GGUF's import writes one), with
    the parameters counted from the shape: tied embedding, attention, gated feed-forward,
    norms. No weights are read."""
    c = config.get("text_config", config)
    d, layers, f = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    q, kv, v = c["num_attention_heads"], c.get("num_key_value_heads", 1), c["vocab_size"]
    h = c.get("head_dim") or d // q
    per_layer = 2 * d * q * h + 2 * d * kv * h + 3 * d * f + 4 * d + 2 * h
    shape = Shape(d, q, kv, h, f, v, (None,) * layers, 0)
    return ModelSize(v * d + layers * per_layer + d, layers, shape)


def size_without_weights(source: str) -> ModelSize | None:
    """The size of a registry model, or of a source already prepared as a Hugging Face
    folder (``config.json``); None where only loading the model would tell (a preset)."""
    import json
    from pathlib import Path

    from gemma_panel.models.loader import prepare_model
    from gemma_panel.models.registry import get_model_spec

    spec = get_model_spec(source)
    if spec is not None:
        return ModelSize.of_spec(spec)
    config = Path(prepare_model(source, progress=False)) / "config.json"
    if not config.is_file():
        return None
    try:
        return size_of_hf_config(json.loads(config.read_text()))
    except (KeyError, TypeError, ValueError):
        return None


def model_size(source: str) -> ModelSize:
    """The size of a recipe's model: its registry entry, else its loaded backbone (slow)."""
    from gemma_panel.models.registry import get_model_spec

    spec = get_model_spec(source)
    if spec is not None:
        return ModelSize.of_spec(spec)
    from gemma_panel.models import load_model

    return ModelSize.of_backbone(load_model(source, progress=False).backbone)
