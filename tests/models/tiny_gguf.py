"""Tiny Gemma GGUF files written the way llama.cpp writes them, for fast tests.

The tokenizer is a real SentencePiece BPE model trained in a second on a few paragraphs; the
weights are random. Norm weights are stored with llama.cpp's +1, special tokens as CONTROL,
the rest as llama.cpp's converter stores them, so the importer meets what it meets in the wild.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

CORPUS = """The quick brown fox jumps over the lazy dog. Gemma is a family of open models.
Fine-tuning adapts a pre-trained model to a task with a small learning rate.
def add(a, b):
    return a + b
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Über Brücken gehen wir; café, naïve, résumé.
Low-rank adaptation trains two small matrices beside each frozen weight.
""" * 20

ARCH_KEYS = {"gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3"}


def train_tiny_sentencepiece(directory: Path, vocab_size: int = 384,
                             space_piece: bool = True) -> bytes:
    """A BPE SentencePiece model with Gemma's special ids (pad 0, eos 1, bos 2, unk 3).

    ``space_piece``: also a user-defined piece of two real spaces, beside the normal "▁▁",
    which SentencePiece never matches and transformers does (so a Hugging Face export's
    whitespace probe fails on it; Gemma's own tokenizer agrees with transformers there)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>", "\n",
                              *(["  "] if space_piece else [])],
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        minloglevel=2,
    )
    return model.getvalue()


def gguf_vocab(proto: bytes):
    """Pieces, scores and GGUF token types as llama.cpp's converter stores them."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString(proto)
    tokens, scores, types = [], [], []
    for piece in m.pieces:
        kind = piece.type
        text = piece.piece
        if text in ("<start_of_turn>", "<end_of_turn>", "<unk>"):
            kind = 3  # listed as special by Hugging Face -> CONTROL in the GGUF
        elif kind == 4:
            text = text.replace("\u2581", " ")  # llama.cpp re-spells user-defined spaces
        tokens.append(text)
        scores.append(piece.score)
        types.append(kind)
    return tokens, scores, types


def write_tiny_gemma_gguf(
    path: Path,
    arch: str = "gemma3",
    *,
    hidden: int = 64,
    layers: int = 6,
    heads: int = 2,
    kv_heads: int = 1,
    head_dim: int = 32,
    ffn: int = 128,
    sliding_window: int = 6,
    seed: int = 0,
    quantize: bool = True,
    space_piece: bool = True,
) -> Path:
    """Write a random tiny Gemma GGUF of the given architecture; return its path."""
    import gguf

    rng = np.random.default_rng(seed)
    proto = train_tiny_sentencepiece(path.parent, space_piece=space_piece)
    tokens, scores, types = gguf_vocab(proto)
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny {arch}")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(1e-6)
    if arch != "gemma":
        writer.add_sliding_window(sliding_window)
    if arch == "gemma2":
        writer.add_attn_logit_softcapping(50.0)
        writer.add_final_logit_softcapping(30.0)
    if arch == "gemma3":
        writer.add_rope_freq_base(1_000_000.0)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)

    def weight(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def norm(n):
        # Gemma's effective scale is 1 + w; llama.cpp stores 1 + w.
        return (1.0 + weight(n, scale=0.1)).astype(np.float32)

    def add(name, values, qtype=None):
        if qtype is None or not quantize:
            writer.add_tensor(name, values)
            return
        data = gguf.quants.quantize(values, qtype)
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)

    q8, f16, bf16 = (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F16,
                     gguf.GGMLQuantizationType.BF16)
    add("token_embd.weight", weight(vocab, hidden, scale=0.5), q8)
    add("output_norm.weight", norm(hidden))
    for i in range(layers):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", norm(hidden))
        add(p + "attn_q.weight", weight(heads * head_dim, hidden), q8)
        add(p + "attn_k.weight", weight(kv_heads * head_dim, hidden), f16)
        add(p + "attn_v.weight", weight(kv_heads * head_dim, hidden), bf16)
        add(p + "attn_output.weight", weight(hidden, heads * head_dim), q8)
        add(p + "ffn_norm.weight", norm(hidden))
        add(p + "ffn_gate.weight", weight(ffn, hidden), q8)
        add(p + "ffn_up.weight", weight(ffn, hidden), f16)
        add(p + "ffn_down.weight", weight(hidden, ffn), q8)
        if arch != "gemma":
            add(p + "post_attention_norm.weight", norm(hidden))
            add(p + "post_ffw_norm.weight", norm(hidden))
        if arch == "gemma3":
            add(p + "attn_q_norm.weight", norm(head_dim))
            add(p + "attn_k_norm.weight", norm(head_dim))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
