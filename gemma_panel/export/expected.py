"""What an export will weigh and take, said before it starts, without loading the model.

Size: the model's parameter count times the bits per weight of the format and its type
(``BITS``: GGUF's block layouts, Keras's int8/int4, float32 or bfloat16 otherwise), the
norms (1-D tensors) at float32 in GGUF, the tied embedding at Q8_0 in a Q4_0/Q5_0 GGUF (as
``gguf.tensor_type`` writes them); LoRA-only formats weigh the LoRA factors at float32.
The count comes from the model registry, else from a GGUF file's header (tensor shapes
only; nothing is loaded). Time: seconds per MB of output, measured by this store's earlier
exports of the format (their manifests' ``timings``), else the rates measured on Gemma 3
270M with 2 CPU cores (docs/export.md), which ``STATED_S_PER_MB`` copies.

Example:
    >>> expect_export(recipe, "gguf", "q8_0", runs_root).text()
    '≈ 292 MB (268M parameters × 8.5 bits, ...); ≈ 1.8 min (...)'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Bits per weight of a 2-D tensor; GGUF's quantized blocks carry their scales (Q8_0: 32
# weights in 34 bytes). K-quant mixes (_S/_M/_L) keep some tensors higher: their figure is
# the base type's.
BITS = {"f32": 32, "f16": 16, "bf16": 16, "q8_0": 8.5, "q5_0": 5.5, "q4_0": 4.5,
        "q2_k": 2.625, "q3_k_s": 3.4375, "q3_k_m": 3.4375, "q3_k_l": 3.4375, "q4_k_s": 4.5,
        "q4_k_m": 4.5, "q5_k_s": 5.5, "q5_k_m": 5.5, "q6_k": 6.5625, "int8": 8, "int4": 4}
LORA_ONLY = ("lora", "peft")
# Seconds of writing and verifying per MB of output: docs/export.md's table (Gemma 3 270M,
# 2 CPU cores; keras and preset from savedmodel's, hf from gguf f32's, q4_0 from q5_0's).
STATED_S_PER_MB = {"savedmodel": 38 / 1079, "keras": 38 / 1079, "preset": 38 / 1079,
                   "keras:int8": 170 / 276, "hf": 70 / 1079, "gguf": 70 / 1079,
                   "gguf:q8_0": 109 / 292, "gguf:q5_0": 112 / 254, "gguf:q4_0": 112 / 254,
                   "lora": 38 / 1079, "peft": 38 / 1079,
                   # docs/export.md's LiteRT conversion times (at load ~11), twice: the base
                   # model is converted too, for the "LoRA carried" check
                   "litert": 2 * (64 + 382) / 1074, "litert:int8": 2 * (64 + 510) / 945}
STATED = "docs/export.md's rate for Gemma 3 270M on 2 CPU cores"
MIN_SECONDS = 5.0  # writing, loading back and comparing take a few seconds whatever the size


@dataclass(frozen=True)
class ParamCount:
    """A model's parameters as an export sees them, and where the count comes from."""

    total: int
    embedding: int  # the tied token embedding (also the LM head)
    vectors: int  # 1-D tensors (norms): float32 in every GGUF type
    lora: int  # the recipe's LoRA factors (0 without LoRA)
    source: str


@dataclass(frozen=True)
class Expectation:
    bytes: int | None
    seconds: float | None
    size_basis: str  # how the size was reckoned, in words
    time_basis: str  # where the rate comes from, in words

    def text(self) -> str:
        if self.bytes is None:
            return f"Expected size and time: unknown ({self.size_basis})."
        return (f"Expected: ≈ {_mb(self.bytes)} ({self.size_basis}); ≈ "
                f"{_minutes(self.seconds)} to write and verify ({self.time_basis}), plus "
                "loading the model.")


def count_params(recipe) -> ParamCount | None:
    """The recipe's model's parameters from the registry or a GGUF header; None if neither."""
    from gemma_panel.models.registry import get_model_spec
    from gemma_panel.training.flops import Shape

    source = recipe.model.source
    spec = get_model_spec(source)
    if spec is not None:
        shape, layers, where = Shape.of_spec(spec), spec.num_layers, f"the registry's {spec.name}"
        total, embedding, vectors = spec.params, spec.embedding_params, 0
    elif str(source).endswith(".gguf") and Path(source).is_file():
        try:
            total, embedding, vectors, shape, layers = _gguf_counts(Path(source))
        except (KeyError, TypeError):  # a Gemma GGUF without the usual shape metadata
            return None
        where = "the GGUF file's tensor shapes"
    else:
        return None
    lora = recipe.lora.rank * layers * sum(shape.lora_target_params(t)
                                           for t in recipe.lora.target_layers) \
        if recipe.lora.enabled else 0
    return ParamCount(total, embedding, vectors, lora, where)


def _gguf_counts(path: Path):
    from gemma_panel.models.gguf_import import hf_config_from_gguf, open_gguf
    from gemma_panel.training.flops import Shape

    reader = open_gguf(path)
    sizes = {t.name: int(t.n_elements) for t in reader.tensors}
    vectors = sum(int(t.n_elements) for t in reader.tensors if len(t.shape) == 1)
    c = hf_config_from_gguf(reader)
    shape = Shape(c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"],
                  c["head_dim"], c["intermediate_size"], c["vocab_size"],
                  (None,) * c["num_hidden_layers"], 0)
    return (sum(sizes.values()), sizes.get("token_embd.weight", 0), vectors, shape,
            c["num_hidden_layers"])


def expected_bytes(params: ParamCount, fmt: str, quantize: str | None,
                   dtype: str = "float32") -> tuple[int, str]:
    """Bytes of the export's weights, and how they were reckoned."""
    if fmt in LORA_ONLY:
        return params.lora * 4, f"{_count(params.lora)} LoRA parameters × 32 bits"
    float_bits = 16 if dtype == "bfloat16" else 32
    if fmt == "gguf":
        quantize = quantize or "f16"
        bits = BITS[quantize]
        embed_bits = BITS["q8_0"] if quantize in ("q4_0", "q5_0") else bits
        matrices = params.total - params.vectors - params.embedding
        total = (matrices * bits + params.embedding * embed_bits + params.vectors * 32) / 8
        note = f", embedding at {embed_bits:g}" if embed_bits != bits else ""
        return int(total), f"{_count(params.total)} parameters × {bits:g} bits{note}"
    if fmt == "litert" and quantize == "int8":  # its quantizer leaves the lookup float32
        matrices = params.total - params.embedding
        return (int((matrices * 8 + params.embedding * 32) / 8),
                f"{_count(params.total)} parameters × 8 bits, the embedding lookup at 32")
    bits = BITS[quantize] if quantize in ("int8", "int4") else float_bits
    return int(params.total * bits / 8), f"{_count(params.total)} parameters × {bits:g} bits"


def seconds_per_mb(fmt: str, quantize: str | None, runs_root: Path | None) -> tuple[float, str]:
    """The rate: this store's earlier exports of the kind (measured), else the stated one."""
    kind = f"{fmt}:{quantize}" if quantize else fmt
    measured = [m for m in _manifests(runs_root) if m.get("format") == fmt
                and (m.get("quantize") or None) == (quantize or None)]
    pairs = [(m["timings"]["export_and_verify_s"], m["total_bytes"] / 1e6) for m in measured
             if m.get("timings", {}).get("export_and_verify_s") and m.get("total_bytes")]
    if pairs:
        rate = sum(s for s, _ in pairs) / sum(mb for _, mb in pairs)
        return rate, f"measured: {len(pairs)} earlier {kind} export(s) in this store"
    rate = STATED_S_PER_MB.get(kind, STATED_S_PER_MB.get(fmt, 70 / 1079))
    return rate, STATED + " (rerun 'python benchmarks/export_cost.py' for this machine's)"


def expect_export(recipe, fmt: str, quantize: str | None,
                  runs_root: Path | None = None) -> Expectation:
    """The expected size and time of exporting ``recipe``'s run to ``fmt``/``quantize``."""
    quantize = None if quantize in (None, "none") else quantize
    if fmt == "gguf":
        from gemma_panel.export.pipeline import DEFAULT_GGUF_TYPE

        quantize = quantize or DEFAULT_GGUF_TYPE
    if fmt == "litert":
        from gemma_panel.export.litert import DEFAULT_LITERT_TYPE

        quantize = quantize or DEFAULT_LITERT_TYPE
    params = count_params(recipe)
    if params is None:
        return Expectation(None, None, f"{recipe.model.source} is neither in the registry "
                           "nor a GGUF file, so its parameters are not counted before "
                           "loading it", "")
    size, basis = expected_bytes(params, fmt, quantize, recipe.model.dtype)
    rate, where = seconds_per_mb(fmt, quantize, runs_root)
    return Expectation(size, max(MIN_SECONDS, rate * size / 1e6),
                       f"{basis}; count from {params.source}", where)


def _manifests(runs_root: Path | None) -> list[dict]:
    if runs_root is None or not Path(runs_root).is_dir():
        return []
    found = []
    for path in Path(runs_root).glob("*/exports/*/manifest.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def _mb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
