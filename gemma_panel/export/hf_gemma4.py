"""What KerasHub's Gemma 4 Hugging Face export leaves out or gets wrong, filled in.

``export_to_transformers`` writes a ``gemma4_text`` config and a SentencePiece
``tokenizer.model``. For the folder to compute our model in transformers and to load back
through `gemma_panel.models.load_model` (KerasHub's converter) it also needs:

* the global layers' proportional RoPE (without ``rope_type`` transformers takes the default
  for both layer kinds: logits ~1e-2 off on a tiny model), the causal-LM architecture, tied
  embeddings and the tokenizer's special ids;
* the key/value sharing said the way both readers understand it: KerasHub writes
  ``num_global_key_value_heads`` even where its model has none (it then means "K = V" to
  KerasHub's converter) and never ``attention_k_eq_v`` (the switch transformers reads);
* ``tokenizer.json``: KerasHub's converter reads only that, and so does llama.cpp's;
* an ``added_tokens_decoder`` that names only tokens the vocabulary has (KerasHub lists
  ``<video|>`` etc. at the unknown token's id when the vocabulary lacks them) and names the
  turn markers, which KerasHub leaves out (`write_tokenizer_files`).
"""

from __future__ import annotations

import json
from pathlib import Path


def completed_gemma4_config(config: dict, backbone, tokenizer) -> dict:
    """KerasHub's ``gemma4_text`` config with what transformers needs to compute our model."""
    rope = config.get("rope_parameters", {})
    rope.setdefault("full_attention", {})["rope_type"] = "proportional"
    rope.setdefault("sliding_attention", {})["rope_type"] = "default"
    shared = backbone.num_global_key_value_heads
    return {**config, "rope_parameters": rope, "architectures": ["Gemma4ForCausalLM"],
            "attention_k_eq_v": shared is not None, "num_global_key_value_heads": shared,
            "tie_word_embeddings": True, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.start_token_id, "eos_token_id": tokenizer.end_token_id}


def write_tokenizer_files(folder: Path, tokenizer, chat_template: str | None = None) -> None:
    """The Hugging Face tokenizer files of a KerasHub Gemma 4 tokenizer: its SentencePiece
    ``tokenizer.model``, ``tokenizer.json`` and ``tokenizer_config.json``.

    The config is KerasHub's, with ``added_tokens_decoder`` naming only tokens the vocabulary
    has, and every control or user-defined piece (the turn, channel and tool markers) as
    special (``extra_special_tokens``), so that readers which go by the config (llama.cpp's
    converter: CONTROL tokens) treat them as whole tokens.
    """
    from keras_hub.src.utils.transformers.export.gemma4 import get_gemma4_tokenizer_config
    from sentencepiece import sentencepiece_model_pb2 as pb

    from gemma_panel.models.hf_gemma4 import tokenizer_json

    folder = Path(folder)
    (folder / "tokenizer.model").write_bytes(tokenizer.proto)
    (folder / "tokenizer.json").write_text(tokenizer_json(folder / "tokenizer.model"))
    config = get_gemma4_tokenizer_config(tokenizer)
    decoder = {token_id: entry for token_id, entry in config["added_tokens_decoder"].items()
               if tokenizer.id_to_token(int(token_id)) == entry["content"]}
    proto = pb.ModelProto()
    proto.ParseFromString(tokenizer.proto)
    for token_id, piece in enumerate(proto.pieces):
        if piece.type in (pb.ModelProto.SentencePiece.CONTROL,
                          pb.ModelProto.SentencePiece.USER_DEFINED):
            decoder.setdefault(str(token_id), {
                "content": piece.piece, "special": True, "single_word": False,
                "lstrip": False, "rstrip": False, "normalized": False})
    config["added_tokens_decoder"] = dict(sorted(decoder.items(), key=lambda kv: int(kv[0])))
    named = {config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    config["extra_special_tokens"] = [entry["content"] for entry in
                                      config["added_tokens_decoder"].values()
                                      if entry["content"] not in named]
    if chat_template:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
