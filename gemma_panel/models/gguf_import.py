"""Turn a Gemma GGUF file (llama.cpp's format) into a Hugging Face folder that KerasHub loads.

llama.cpp's converter renames Gemma's tensors, adds 1 to every RMSNorm weight (Gemma computes
``x * (1 + w)``; llama.cpp computes ``x * w``) and may quantize them. This module undoes all
three: it dequantizes each tensor with the ``gguf`` package's own dequantizers, maps the names
back to the Hugging Face layout, subtracts the 1, and writes ``config.json``,
``model.safetensors`` (float32) and a SentencePiece ``tokenizer.model`` built from the GGUF
vocabulary. KerasHub's Hugging Face converters then load the folder like any checkpoint.

Supported architectures: ``gemma`` (Gemma 1, CodeGemma), ``gemma2``, ``gemma3`` (text) and
``gemma4`` (text; its names, config and BPE tokenizer in `gemma_panel.models.gguf_gemma4`:
no ``-1`` on its norms, and a ``tokenizer.json`` rather than a SentencePiece model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from gemma_panel.models.errors import ModelSourceError

SUPPORTED_ARCHITECTURES = ("gemma", "gemma2", "gemma3", "gemma4")

# GGUF tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N."), per
# architecture. In Gemma 1, llama.cpp's "ffn_norm" is the norm before the MLP, which
# Hugging Face calls post_attention_layernorm; Gemma 2 and 3 have four norms per block.
_COMMON = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_NAMES = {
    "gemma": {**_COMMON, "ffn_norm": "post_attention_layernorm"},
    "gemma2": {
        **_COMMON,
        "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
    },
}
_BLOCK_NAMES["gemma3"] = {
    **_BLOCK_NAMES["gemma2"],
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm"}

# Layer counts of the 27B models, which scale queries by hidden/heads rather than head_dim
# (llama.cpp hard-codes the same rule).
_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


def open_gguf(path: str | os.PathLike):
    """Open a GGUF file (``gguf_reader.read_gguf``), checking it is whole and is a Gemma.

    Raises:
        ModelSourceError: the file is not GGUF, is truncated, or holds another architecture.
    """
    from gemma_panel.models.gguf_reader import read_gguf

    path = Path(path)
    try:
        reader = read_gguf(path)
    except Exception as exc:  # the reader raises ValueError, struct.error, IndexError ...
        raise ModelSourceError(
            f"'{path}' is not a readable GGUF file ({exc}); it may be truncated or not a GGUF "
            "at all: download or copy it again and check its size."
        ) from exc
    size = path.stat().st_size
    for tensor in reader.tensors:
        if tensor.data_offset + tensor.n_bytes > size:
            raise ModelSourceError(
                f"'{path}' is truncated: tensor '{tensor.name}' ends at byte "
                f"{tensor.data_offset + tensor.n_bytes} but the file has {size} bytes; "
                "download or copy it again."
            )
    arch = field_value(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelSourceError(
            f"'{path}' holds a '{arch}' model, but gemma_panel fine-tunes Gemma models "
            f"(GGUF architectures {', '.join(SUPPORTED_ARCHITECTURES)}); pick a Gemma GGUF."
        )
    return reader


def field_value(reader, key: str, default=None):
    """One metadata value of a GGUF file as a Python value, or ``default`` if absent."""
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def hf_config_from_gguf(reader) -> dict:
    """The Hugging Face ``config.json`` dictionary equivalent to a Gemma GGUF's metadata."""
    arch = field_value(reader, "general.architecture")

    def meta(key, default=None):
        return field_value(reader, f"{arch}.{key}", default)

    config = _shared_config(reader, meta)
    if arch == "gemma":
        config.update(model_type="gemma", architectures=["GemmaForCausalLM"])
        return config
    layers = config["num_hidden_layers"]
    query_scale = (config["hidden_size"] // config["num_attention_heads"]
                   if layers == _27B_LAYERS[arch] else config["head_dim"])
    config.update(
        query_pre_attn_scalar=query_scale,
        sliding_window=int(meta("attention.sliding_window", 4096)),
    )
    config.update(_gemma2_fields(meta) if arch == "gemma2" else _gemma3_fields(meta, layers))
    return config


def _shared_config(reader, meta) -> dict:
    """The config fields every Gemma generation has; ``meta`` reads ``{arch}.KEY``."""
    hidden = int(meta("embedding_length"))
    heads = int(meta("attention.head_count"))
    return {
        "vocab_size": len(field_value(reader, "tokenizer.ggml.tokens")),
        "hidden_size": hidden,
        "intermediate_size": int(meta("feed_forward_length")),
        "num_hidden_layers": int(meta("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta("attention.head_count_kv", heads)),
        "head_dim": int(meta("attention.key_length", hidden // heads)),
        "rms_norm_eps": float(meta("attention.layer_norm_rms_epsilon", 1e-6)),
        "max_position_embeddings": int(meta("context_length", 8192)),
        "rope_theta": float(meta("rope.freq_base", 10000.0)),
        "hidden_activation": "gelu_pytorch_tanh",
        "bos_token_id": int(field_value(reader, "tokenizer.ggml.bos_token_id", 2)),
        "eos_token_id": int(field_value(reader, "tokenizer.ggml.eos_token_id", 1)),
        "pad_token_id": int(field_value(reader, "tokenizer.ggml.padding_token_id", 0)),
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def _gemma2_fields(meta) -> dict:
    return {
        "model_type": "gemma2",
        "architectures": ["Gemma2ForCausalLM"],
        "attn_logit_softcapping": float(meta("attn_logit_softcapping", 50.0)),
        "final_logit_softcapping": float(meta("final_logit_softcapping", 30.0)),
    }


def _gemma3_fields(meta, layers: int) -> dict:
    """Gemma 3: five sliding-window layers, then one global layer; local RoPE base 10k."""
    scaling_type = meta("rope.scaling.type")
    rope_scaling = None
    if scaling_type and scaling_type != "none":
        rope_scaling = {"rope_type": scaling_type, "factor": float(meta("rope.scaling.factor"))}
    return {
        "model_type": "gemma3_text",
        "architectures": ["Gemma3ForCausalLM"],
        "rope_local_base_freq": 10000.0,
        "rope_scaling": rope_scaling,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                        for i in range(layers)],
    }


def hf_tensor_name(arch: str, gguf_name: str) -> str | None:
    """The Hugging Face name of a GGUF tensor, or None for tensors Gemma does not use."""
    base, _, suffix = gguf_name.rpartition(".")
    if base.startswith("blk."):
        _, index, short = base.split(".", 2)
        hf = _BLOCK_NAMES[arch].get(short)
        return None if hf is None else f"model.layers.{index}.{hf}.{suffix}"
    hf = _TOP_NAMES.get(base)
    return None if hf is None else f"{hf}.{suffix}"


def gguf_tensor_name(arch: str, hf_name: str) -> str | None:
    """The llama.cpp name of a Hugging Face tensor (``hf_tensor_name`` in reverse)."""
    base, _, suffix = hf_name.rpartition(".")
    if base.startswith("model.layers."):
        index, short = base[len("model.layers."):].split(".", 1)
        reverse = {hf: gguf for gguf, hf in _BLOCK_NAMES[arch].items()}
        return f"blk.{index}.{reverse[short]}.{suffix}" if short in reverse else None
    reverse = {hf: gguf for gguf, hf in _TOP_NAMES.items()}
    return f"{reverse[base]}.{suffix}" if base in reverse else None


def dequantized(tensor) -> np.ndarray:
    """A GGUF tensor as float32, in Hugging Face's (out_features, in_features) order."""
    from gguf.quants import dequantize

    shape = tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists dims fastest-first
    try:
        values = dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as exc:
        raise ModelSourceError(
            f"Tensor '{tensor.name}' is stored as {tensor.tensor_type.name}, which the gguf "
            "package cannot dequantize; re-quantize the model to Q8_0, Q6_K, Q5_K, Q4_K, F16, "
            "BF16 or F32 with llama-quantize."
        ) from exc
    return np.asarray(values, dtype=np.float32).reshape(shape)


def convert_gguf_to_hf(reader, out_dir: str | os.PathLike, progress=None) -> Path:
    """Write the Hugging Face folder (config, float32 safetensors, tokenizer.model).

    Args:
        reader: an open ``gguf.GGUFReader`` (see ``open_gguf``).
        out_dir: the folder to write; created if missing.
        progress: optional callable ``progress(done, total, name)`` called per tensor.
    """
    from safetensors.numpy import save_file

    from gemma_panel.models.gguf_tokenizer import sentencepiece_proto_from_gguf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = field_value(reader, "general.architecture")
    if arch == "gemma4":
        return _convert_gemma4(reader, out_dir, progress)
    config = hf_config_from_gguf(reader)
    tensors = {}
    total = len(reader.tensors)
    for done, tensor in enumerate(reader.tensors, 1):
        name = hf_tensor_name(arch, tensor.name)
        if name is not None:
            values = dequantized(tensor)
            if name.endswith("norm.weight"):
                values = values - 1.0  # llama.cpp stores Gemma's (1 + w); undo it
            tensors[name] = values
        if progress is not None:
            progress(done, total, tensor.name)
    _check_complete(tensors)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "tokenizer.model").write_bytes(sentencepiece_proto_from_gguf(reader))
    return out_dir


def _check_complete(tensors: dict) -> None:
    missing = {"model.embed_tokens.weight", "model.norm.weight"} - tensors.keys()
    if missing:
        raise ModelSourceError(
            f"The GGUF has no {', '.join(sorted(missing))}; it is not a complete Gemma "
            "checkpoint. Use the file llama.cpp's convert_hf_to_gguf.py produced."
        )


def _convert_gemma4(reader, out_dir: Path, progress=None) -> Path:
    """A ``gemma4`` GGUF as a folder KerasHub's Gemma 4 converter loads as it is."""
    from safetensors.numpy import save_file

    from gemma_panel.models import gguf_gemma4

    tensors = {}
    for done, tensor in enumerate(reader.tensors, 1):
        name = (gguf_gemma4.ROPE_FREQS if tensor.name == gguf_gemma4.ROPE_FREQS
                else gguf_gemma4.hf_name(tensor.name))
        if name is not None:
            tensors[name] = dequantized(tensor)
        if progress is not None:
            progress(done, len(reader.tensors), tensor.name)
    _check_complete(tensors)
    config = gguf_gemma4.hf_config(reader, tensors)  # takes rope_freqs out of tensors
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    gguf_gemma4.write_tokenizer(reader, out_dir)
    return out_dir
