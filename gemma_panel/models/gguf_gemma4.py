"""Gemma 4 in GGUF: llama.cpp's ``gemma4`` names, and a GGUF read back into a Hugging Face
folder that `gemma_panel.models.load_model` loads.

llama.cpp's converter (``convert_hf_to_gguf.py``, class ``Gemma4Model``) maps the text
model's tensors with gguf's ``TensorNameMap`` (the table below is that map, both ways; a
test checks it against ``gguf``), stores the norms as they are (Gemma 4 computes ``x * w``:
no ``+1`` as in Gemma 1-3), adds ``.weight`` to ``layer_scalar`` and the expert tensors,
stores ``router.scale`` as ``ffn_gate_inp.scale`` and ``router.per_expert_scale`` as
``ffn_down_exps.scale``, and adds a ``rope_freqs`` tensor for the global layers'
proportional RoPE (1 for the rotated pairs, 1e30 for the rest). The tokenizer is the
``tokenizer.json`` BPE (``tokenizer.ggml.model = gemma4``, with its merges).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gemma_panel.models.errors import ModelSourceError

# GGUF name (after "blk.N.") -> Hugging Face name (after "model.layers.N."), without suffix.
BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "post_ffw_norm_1": "post_feedforward_layernorm_1",
    "pre_ffw_norm_2": "pre_feedforward_layernorm_2",
    "post_ffw_norm_2": "post_feedforward_layernorm_2",
    "ffn_gate_inp": "router.proj",
    "ffn_gate_up_exps": "experts.gate_up_proj",
    "ffn_down_exps": "experts.down_proj",
    "inp_gate": "per_layer_input_gate",
    "proj": "per_layer_projection",
    "post_norm": "post_per_layer_input_norm",
    "layer_output_scale": "layer_scalar",
}
TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "per_layer_token_embd": "model.embed_tokens_per_layer",
    "per_layer_model_proj": "model.per_layer_model_projection",
    "per_layer_proj_norm": "model.per_layer_projection_norm",
}
# Hugging Face tensors stored under another GGUF suffix, and those without ".weight".
SCALES = {"router.scale": ("ffn_gate_inp", "scale"),
          "router.per_expert_scale": ("ffn_down_exps", "scale")}
BARE = ("layer_scalar", "experts.gate_up_proj", "experts.down_proj")
ROPE_FREQS = "rope_freqs.weight"
UNROTATED = 1e30


def gguf_name(hf_name: str) -> str | None:
    """llama.cpp's name for a Gemma 4 Hugging Face tensor (None: not a text-model tensor)."""
    if hf_name.startswith("model.layers."):
        index, short = hf_name[len("model.layers."):].split(".", 1)
        if short in SCALES:
            base, suffix = SCALES[short]
            return f"blk.{index}.{base}.{suffix}"
        if short not in BARE:
            short, _, suffix = short.rpartition(".")
            if suffix != "weight":
                return None
        reverse = {hf: g for g, hf in BLOCK_NAMES.items()}
        return f"blk.{index}.{reverse[short]}.weight" if short in reverse else None
    base, _, suffix = hf_name.rpartition(".")
    reverse = {hf: g for g, hf in TOP_NAMES.items()}
    return f"{reverse[base]}.weight" if base in reverse and suffix == "weight" else None


def hf_name(name: str) -> str | None:
    """The Hugging Face name of a ``gemma4`` GGUF tensor (`gguf_name` in reverse)."""
    base, _, suffix = name.rpartition(".")
    if base.startswith("blk."):
        _, index, short = base.split(".", 2)
        for hf, (scaled, scale_suffix) in SCALES.items():
            if (short, suffix) == (scaled, scale_suffix):
                return f"model.layers.{index}.{hf}"
        hf = BLOCK_NAMES.get(short)
        if hf is None or suffix != "weight":
            return None
        return f"model.layers.{index}.{hf}" + ("" if hf in BARE else ".weight")
    hf = TOP_NAMES.get(base)
    return None if hf is None else f"{hf}.weight"


def rope_freqs(global_head_dim: int, partial_rotary_factor: float) -> np.ndarray:
    """llama.cpp's frequency factors for proportional RoPE on the global layers."""
    rotated = int(global_head_dim * partial_rotary_factor / 2)
    return np.array([1.0] * rotated + [UNROTATED] * (global_head_dim // 2 - rotated),
                    dtype=np.float32)


def hf_config(reader, tensors: dict) -> dict:
    """The ``gemma4_text`` config of a ``gemma4`` GGUF (``tensors``: its HF-named arrays)."""
    from gemma_panel.models.gguf_import import field_value

    def meta(key, default=None):
        value = field_value(reader, f"gemma4.{key}", default)
        return list(value) if isinstance(value, (list, tuple)) else value

    swa = [bool(s) for s in meta("attention.sliding_window_pattern")]
    layer_types = ["sliding_attention" if s else "full_attention" for s in swa]
    kv = meta("attention.head_count_kv")
    kv = kv if isinstance(kv, list) else [kv] * len(swa)
    ffn = meta("feed_forward_length")
    ffn = ffn if isinstance(ffn, list) else [ffn] * len(swa)
    global_layers = [i for i, s in enumerate(swa) if not s]
    k_eq_v = any(f"model.layers.{i}.self_attn.v_proj.weight" not in tensors
                 for i in global_layers)
    global_head_dim = int(meta("attention.key_length"))
    factors = tensors.pop(ROPE_FREQS, None)
    rotated = int(np.sum(factors < UNROTATED / 2)) if factors is not None else global_head_dim // 8
    experts = int(meta("expert_count", 0) or 0)
    vocab = len(field_value(reader, "tokenizer.ggml.tokens"))
    per_layer = int(meta("embedding_length_per_layer_input", 0) or 0)
    return {
        "model_type": "gemma4_text", "architectures": ["Gemma4ForCausalLM"],
        "vocab_size": vocab, "vocab_size_per_layer_input": vocab,
        "hidden_size": int(meta("embedding_length")),
        "intermediate_size": int(ffn[0]), "use_double_wide_mlp": len(set(ffn)) > 1,
        "num_hidden_layers": int(meta("block_count")),
        "num_attention_heads": int(meta("attention.head_count")),
        "num_key_value_heads": int(kv[swa.index(True)] if True in swa else kv[0]),
        "num_global_key_value_heads": int(kv[global_layers[0]]) if k_eq_v else None,
        "attention_k_eq_v": k_eq_v,
        "head_dim": int(meta("attention.key_length_swa")), "global_head_dim": global_head_dim,
        "layer_types": layer_types, "sliding_window": int(meta("attention.sliding_window")),
        "final_logit_softcapping": meta("final_logit_softcapping"),
        "rms_norm_eps": float(meta("attention.layer_norm_rms_epsilon", 1e-6)),
        "max_position_embeddings": int(meta("context_length")),
        "rope_parameters": {
            "full_attention": {"rope_type": "proportional",
                               "rope_theta": float(meta("rope.freq_base")),
                               "partial_rotary_factor": 2 * rotated / global_head_dim},
            "sliding_attention": {"rope_type": "default",
                                  "rope_theta": float(meta("rope.freq_base_swa", 10000.0))}},
        "num_kv_shared_layers": int(meta("attention.shared_kv_layers", 0) or 0),
        "hidden_size_per_layer_input": per_layer,
        "enable_moe_block": experts > 0, "num_experts": experts or None,
        "top_k_experts": int(meta("expert_used_count", 0) or 0) or None,
        "moe_intermediate_size": meta("expert_feed_forward_length"),
        "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False,
        "tie_word_embeddings": True, "torch_dtype": "float32",
        "bos_token_id": int(field_value(reader, "tokenizer.ggml.bos_token_id", 2)),
        "eos_token_id": int(field_value(reader, "tokenizer.ggml.eos_token_id", 1)),
        "pad_token_id": int(field_value(reader, "tokenizer.ggml.padding_token_id", 0)),
    }


def write_tokenizer(reader, folder: Path) -> None:
    """``tokenizer.json`` (the BPE llama.cpp read), ``tokenizer_config.json``, the
    SentencePiece ``tokenizer.model`` KerasHub builds from it, and an empty processor config."""
    from gemma_panel.models.gguf_import import field_value
    from gemma_panel.models.hf_gemma4 import sentencepiece_proto

    if field_value(reader, "tokenizer.ggml.model") != "gemma4":
        raise ModelSourceError("This Gemma 4 GGUF has no 'gemma4' tokenizer (its tokens and "
                               "merges); convert the model again with llama.cpp's "
                               "convert_hf_to_gguf.py.")
    tokens = list(field_value(reader, "tokenizer.ggml.tokens"))
    kinds = [int(k) for k in field_value(reader, "tokenizer.ggml.token_type")]
    merges = list(field_value(reader, "tokenizer.ggml.merges", []))
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": kinds[i] == 3}
             for i, t in enumerate(tokens) if kinds[i] in (3, 4)]  # CONTROL, USER_DEFINED
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": None, "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": [m.split(" ", 1) for m in merges]},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    special = {name: tokens[int(field_value(reader, f"tokenizer.ggml.{key}_token_id", default))]
               for name, key, default in (("bos_token", "bos", 2), ("eos_token", "eos", 1),
                                          ("pad_token", "padding", 0), ("unk_token", "unknown", 3))}
    config = {"tokenizer_class": "GemmaTokenizer", **special,
              "add_bos_token": bool(field_value(reader, "tokenizer.ggml.add_bos_token", True))}
    template = field_value(reader, "tokenizer.chat_template")
    if template:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "processor_config.json").write_text("{}")
    (folder / "tokenizer.model").write_bytes(sentencepiece_proto(folder))
