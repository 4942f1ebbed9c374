"""Gemma 4 GGUF export, written the way llama.cpp's converter (``Gemma4Model``) writes it.

* hyperparameters: the Gemma 3 keys plus per-layer lists (``attention.sliding_window_pattern``,
  ``attention.head_count_kv`` where the global layers differ), both head sizes
  (``attention.key_length``/``value_length`` for the global layers, ``*_swa`` for the
  sliding ones), ``rope.dimension_count``/``_swa``, ``rope.freq_base``/``_swa``,
  ``attention.shared_kv_layers``, ``embedding_length_per_layer_input``, the experts';
* tensors: `gemma_panel.models.gguf_gemma4`'s names, norms stored as they are, and
  ``rope_freqs.weight``;
* tokenizer: the Hugging Face ``tokenizer.json`` this model exports, read as llama.cpp reads
  it (``gguf.LlamaHfVocab`` and ``gguf.SpecialVocab`` with merges), ``tokenizer.ggml.model =
  gemma4``, the channel/tool/quote markers USER_DEFINED so they stay visible, no space
  prefix, BOS added.

Only the text model is written (llama.cpp puts the vision and audio towers in a separate
``mmproj`` file, which this does not write): a model with them is refused up front.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from gemma_panel.export.manifest import ExportError

VISIBLE_TOKENS = {"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>",
                  "<|tool_response>", "<tool_response|>", '<|"|>'}


def check_text_only(backbone) -> None:
    towers = [n for n in ("vision_encoder", "audio_encoder") if getattr(backbone, n, None)]
    if towers:
        raise ExportError(f"GGUF export of Gemma 4 writes the text model only, and this one has "
                          f"a {' and '.join(t.split('_')[0] for t in towers)} tower (llama.cpp "
                          "keeps those in a separate mmproj file, not written here); export "
                          "'hf' and convert it with llama.cpp's convert_hf_to_gguf.py.")


def add_hyperparameters(writer, config: dict, backbone, context: int) -> None:
    """llama.cpp's ``Gemma4Model.set_gguf_parameters`` on our Hugging Face config."""
    swa = [t == "sliding_attention" for t in config["layer_types"]]
    rope = config["rope_parameters"]
    writer.add_context_length(context)
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_freq_base(float(rope["full_attention"]["rope_theta"]))
    writer.add_rope_freq_base_swa(float(rope["sliding_attention"]["rope_theta"]))
    if config.get("final_logit_softcapping"):
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
    writer.add_sliding_window(int(config["sliding_window"]))
    writer.add_shared_kv_layers(int(config.get("num_kv_shared_layers") or 0))
    writer.add_embedding_length_per_layer_input(int(config.get("hidden_size_per_layer_input")
                                                    or 0))
    writer.add_sliding_window_pattern(swa)
    full, local = int(config["global_head_dim"]), int(config["head_dim"])
    writer.add_key_length(full)
    writer.add_value_length(full)
    writer.add_key_length_swa(local)
    writer.add_value_length_swa(local)
    writer.add_rope_dimension_count(full)
    writer.add_rope_dimension_count_swa(local)
    ffn = int(config["intermediate_size"])
    shared_from = len(swa) - int(config.get("num_kv_shared_layers") or 0)
    writer.add_feed_forward_length(
        [ffn if i < shared_from else 2 * ffn for i in range(len(swa))]
        if config.get("use_double_wide_mlp") else ffn)
    kv, kv_full = int(config["num_key_value_heads"]), backbone.num_global_key_value_heads
    writer.add_head_count_kv([kv if s else int(kv_full) for s in swa] if kv_full else kv)
    if config.get("enable_moe_block"):
        writer.add_expert_count(int(config["num_experts"]))
        writer.add_expert_used_count(int(config["top_k_experts"]))
        writer.add_expert_feed_forward_length(int(config["moe_intermediate_size"]))


def rope_tensor(config: dict) -> np.ndarray:
    from gemma_panel.models.gguf_gemma4 import rope_freqs

    full = config["rope_parameters"]["full_attention"]
    return rope_freqs(int(config["global_head_dim"]), float(full["partial_rotary_factor"]))


def tokenizer_fields(model, chat_template: str) -> dict:
    """The ``tokenizer.*`` fields, read from our Hugging Face tokenizer files as llama.cpp
    reads a checkpoint's: {key: (value, value type, sub type)}."""
    import gguf

    from gemma_panel.export.hf_gemma4 import write_tokenizer_files

    v = gguf.GGUFValueType
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_tokenizer_files(folder, model.preprocessor.tokenizer, chat_template)
        vocab = gguf.LlamaHfVocab(folder)
        special = gguf.SpecialVocab(folder, load_merges=True)
        tokens, scores, types = [], [], []
        for text, score, kind in vocab.all_tokens():
            tokens.append(text.decode("utf-8"))
            scores.append(float(score))
            types.append(int(gguf.TokenType.USER_DEFINED if tokens[-1] in VISIBLE_TOKENS
                             else kind))
    fields = {
        "tokenizer.ggml.model": ("gemma4", v.STRING, None),
        "tokenizer.ggml.tokens": (tokens, v.ARRAY, v.STRING),
        "tokenizer.ggml.scores": (scores, v.ARRAY, v.FLOAT32),
        "tokenizer.ggml.token_type": (types, v.ARRAY, v.INT32),
        "tokenizer.ggml.merges": (list(special.merges), v.ARRAY, v.STRING),
        "tokenizer.ggml.add_space_prefix": (False, v.BOOL, None),
        "tokenizer.ggml.add_bos_token": (True, v.BOOL, None),
    }
    names = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
             "pad": "padding_token_id"}
    for kind, token_id in special.special_token_ids.items():
        if kind in names:
            fields[f"tokenizer.ggml.{names[kind]}"] = (int(token_id), v.UINT32, None)
    for kind, value in special.add_special_token.items():
        if kind != "bos":
            fields[f"tokenizer.ggml.add_{kind}_token"] = (bool(value), v.BOOL, None)
    if special.chat_template:
        fields["tokenizer.chat_template"] = (special.chat_template, v.STRING, None)
    return fields
