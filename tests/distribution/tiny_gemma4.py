"""Tiny random Gemma 4 text backbones, built in Keras directly (no Hugging Face round trip).

The variants of ``tests/models/tiny_hf_gemma4.py`` (which tests/training/test_gemma4_training.py
trains through the loader), in KerasHub's argument names: a sliding and a global layer with
their own head sizes; per-layer embeddings (E2B/E4B), a mixture of experts (26B-A4B), global
layers whose keys are their values (26B-A4B, 31B). Every dimension divides by 8, so that
fsdp over 8 host devices can split every kernel.
"""

from __future__ import annotations

VOCAB = 512
TARGETS = ["query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2",
           "ffw_linear"]
VARIANTS = {
    "dense": {},
    "per_layer_embeddings": {"hidden_size_per_layer_input": 8,
                             "vocab_size_per_layer_input": VOCAB},
    "moe": {"enable_moe_block": True, "num_experts": 4, "num_experts_per_token": 2,
            "expert_intermediate_dim": 16},
    "k_eq_v": {"num_global_key_value_heads": 2},
}


def tiny_gemma4_backbone(variant: str = "dense", seed: int = 0):
    """A random text-only ``Gemma4Backbone``; its experts (which KerasHub starts at zero)
    get random values too, so that a wrong expert layout would change the loss."""
    import keras
    import keras_hub
    import numpy as np

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.Gemma4Backbone(
        vocabulary_size=VOCAB, image_size=None, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=32, intermediate_dim=64, head_dim=8,
        global_head_dim=16, sliding_window_size=8,
        layer_types=["sliding_attention", "full_attention"], final_logit_soft_cap=30.0,
        **VARIANTS[variant])
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        if "moe_expert_bank" in weight.path and len(weight.shape) == 3:
            weight.assign(rng.normal(0.0, 0.2, weight.shape).astype(weight.dtype))
    return backbone


def tiny_gemma4_lm(variant: str = "dense", rank: int = 4):
    """The backbone with LoRA on every target KerasHub offers, in a causal LM."""
    import keras_hub

    backbone = tiny_gemma4_backbone(variant)
    backbone.enable_lora(rank, target_layer_names=TARGETS)
    return keras_hub.models.Gemma4CausalLM(backbone=backbone, preprocessor=None)
