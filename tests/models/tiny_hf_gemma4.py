"""A tiny random Gemma 4 written as a Hugging Face folder by transformers, with a tiny tokenizer.

The tokenizer is a byte-fallback BPE (the kind Gemma 4's ``tokenizer.json`` holds) trained
in the test on a few sentences, with Gemma 4's control tokens as added special tokens, so
``<|turn>`` / ``<turn|>`` and the rest each encode to one id.
"""

from __future__ import annotations

from pathlib import Path

GEMMA4_SPECIAL_TOKENS = (
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<|turn>", "<turn|>", "<|think|>",
    "<|channel>", "<channel|>", "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>",
    "<|tool_response>", "<tool_response|>", '<|"|>', "<|image>", "<|image|>", "<image|>",
    "<|audio>", "<|audio|>", "<audio|>", "<|video|>",
)
CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world, how are you today?",
          "system user model answer question"] * 20

# The shapes that matter in Gemma 4, kept tiny: a sliding and a global layer with their own
# head sizes, final logit soft-capping; the variants add per-layer embeddings (E2B/E4B) or a
# mixture of experts (26B-A4B), or global layers whose keys are their values (26B-A4B, 31B).
VARIANTS = {
    "dense": {},
    "per_layer_embeddings": {"hidden_size_per_layer_input": 8},
    "moe": {"enable_moe_block": True, "num_experts": 4, "top_k_experts": 2,
            "moe_intermediate_size": 16},
    "k_eq_v": {"attention_k_eq_v": True, "num_global_key_value_heads": 2},
}


def tiny_tokenizer():
    """A transformers fast tokenizer over a trained byte-fallback BPE."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    byte_pieces = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                  special_tokens=[*GEMMA4_SPECIAL_TOKENS, *byte_pieces])
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def write_tiny_gemma4(folder: Path, variant: str = "dense", seed: int = 0):
    """Save a random ``Gemma4ForCausalLM`` and its tokenizer; return (model, tokenizer)."""
    import torch
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    tokenizer = tiny_tokenizer()
    vocab = len(tokenizer)
    shape = {"hidden_size_per_layer_input": 0, **VARIANTS[variant]}
    config = Gemma4TextConfig(
        vocab_size=vocab, vocab_size_per_layer_input=vocab, hidden_size=32,
        intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, global_head_dim=16, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=30.0,
        max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=2, **shape)
    torch.manual_seed(seed)
    model = Gemma4ForCausalLM(config).eval()
    with torch.no_grad():  # larger than the default init, so differences would show
        for weight in model.parameters():
            weight.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer
