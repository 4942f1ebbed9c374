"""The Gemma layout rules: KerasHub's convention, extended to Gemma 2/3/4 and LoRA factors."""

from __future__ import annotations

import functools
import re

import keras
import keras_hub
import pytest

from gemma_panel.distribution.layouts import _KERNEL_RULES, fit_axes, preferred_axes, weight_axes
from gemma_panel.distribution.strategy import MeshPlan
from tests.distribution.tiny_gemma4 import VARIANTS, tiny_gemma4_backbone

TARGETS = ["query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2",
           "ffw_linear"]


def tiny_gemma2():
    """Gemma 2's shape in miniature: post-norms, soft-caps, sliding windows, 2 KV heads."""
    return keras_hub.models.GemmaBackbone(
        vocabulary_size=256, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=64, intermediate_dim=256, head_dim=32, query_head_dim_normalize=False,
        use_post_ffw_norm=True, use_post_attention_norm=True, final_logit_soft_cap=30.0,
        attention_logit_soft_cap=50.0, use_sliding_window_attention=True,
        sliding_window_size=6)


def tiny_gemma3():
    return keras_hub.models.Gemma3Backbone(
        vocabulary_size=256, image_size=16, num_layers=2, num_query_heads=4,
        num_key_value_heads=1, hidden_dim=64, intermediate_dim=128, head_dim=32,
        vision_encoder=None)


def plan(batch, model, strategy="model_parallel"):
    return MeshPlan(strategy, {"batch": batch, "model": model}, devices=[])


GEMMA4 = [functools.partial(tiny_gemma4_backbone, variant) for variant in VARIANTS]


@pytest.mark.parametrize("build", [tiny_gemma2, tiny_gemma3, *GEMMA4],
                         ids=["gemma2", "gemma3", *(f"gemma4-{v}" for v in VARIANTS)])
def test_every_kernel_and_lora_factor_has_a_rule_and_norms_have_none(build):
    """Norms and the other vectors (Gemma 4's layer scalar, router and expert scales) are
    replicated; every matrix or larger has a rule of its rank."""
    backbone = build()
    backbone.enable_lora(4, target_layer_names=TARGETS)
    for variable in backbone.weights:
        axes = preferred_axes(variable.path)
        if "norm" in variable.path or len(variable.shape) < 2:
            assert axes is None, variable.path
        else:
            assert axes is not None and len(axes) == len(variable.shape), variable.path


def test_every_rule_names_weights_kerashub_builds():
    """No stale rule: each one matches a weight of a tiny Gemma 2, 3 or 4 (the experts and the
    per-layer embeddings are Gemma 4's only)."""
    builds = [tiny_gemma2(), tiny_gemma3(), *(build() for build in GEMMA4)]
    paths = {v.path for backbone in builds for v in backbone.weights}
    for pattern, _ in _KERNEL_RULES:
        assert any(re.fullmatch(pattern, path) for path in paths), pattern


def test_gemma4_experts_split_over_model_by_expert_and_over_batch_on_hidden():
    """26B-A4B's shapes: 128 experts of width 704 on hidden 2816; E4B's per-layer table."""
    mp, fsdp = plan(2, 4), plan(8, 1, "fsdp")
    gate, down = (f"decoder_block_5/moe_expert_bank/{w}_proj" for w in ("gate", "down"))
    assert weight_axes(gate, (128, 2816, 704), mp) == ("model", "batch", None)
    assert weight_axes(down, (128, 704, 2816), mp) == ("model", None, "batch")
    assert weight_axes(gate, (128, 2816, 704), fsdp) == (None, "batch", None)
    assert weight_axes(down, (128, 704, 2816), fsdp) == (None, None, "batch")
    assert weight_axes("decoder_block_5/moe_router/proj/kernel", (2816, 128), mp) == \
        ("batch", None)
    assert weight_axes("decoder_block_5/moe_expert_bank/per_expert_scale", (128,), mp) == \
        (None,)
    assert weight_axes("per_layer_token_embedding/embeddings", (262144, 42 * 256), mp) == \
        ("model", "batch")
    assert weight_axes("decoder_block_0/per_layer_input_gate/kernel", (2560, 256), mp) == \
        ("batch", "model")


def test_the_kernels_follow_kerashub_gemma_layout_map():
    """KerasHub's own map (Gemma 1) is the convention; ours must agree on its weights."""
    backbone = tiny_gemma2()
    mesh = keras.distribution.DeviceMesh((1, 1), ["batch", "model"],
                                         keras.distribution.list_devices()[:1])
    theirs = keras_hub.models.GemmaBackbone.get_layout_map(mesh)
    checked = 0
    for variable in backbone.weights:
        layout = theirs[variable.path]
        if layout is not None:
            assert preferred_axes(variable.path) == tuple(layout.axes), variable.path
            checked += 1
    assert checked == 1 + 2 * 7  # the embedding and 7 kernels per block


def test_lora_factors_are_laid_out_like_the_kernel_they_add_to():
    assert preferred_axes("decoder_block_3/attention/query/lora_kernel_a") == \
        ("model", "batch", None)
    assert preferred_axes("decoder_block_3/attention/query/lora_kernel_b") == (None, None)
    assert preferred_axes("decoder_block_3/ffw_gating/lora_kernel_b") == (None, "model")
    assert preferred_axes("decoder_block_3/ffw_linear/lora_kernel_a") == ("model", None)


def test_gemma3_270m_single_kv_head_is_replicated_over_model():
    """The real 270M shapes: 4 query heads, 1 key/value head, hidden 640, head 256."""
    p = plan(2, 4)
    assert weight_axes("decoder_block_0/attention/query/kernel", (4, 640, 256), p) == \
        ("model", "batch", None)
    assert weight_axes("decoder_block_0/attention/key/kernel", (1, 640, 256), p) == \
        (None, "batch", None)
    assert weight_axes("decoder_block_0/attention/value/lora_kernel_a", (1, 640, 8), p) == \
        (None, "batch", None)
    # 4 query heads cannot be split 8 ways either: replicated over model there
    assert weight_axes("decoder_block_0/attention/query/kernel", (4, 640, 256),
                       plan(1, 8))[0] is None
    assert weight_axes("token_embedding/embeddings", (262144, 640), plan(1, 8)) == \
        ("model", None)


def test_fsdp_puts_batch_on_a_free_dimension_and_replicated_strategies_shard_nothing():
    fsdp = plan(8, 1, "fsdp")
    # attention_output's kernel has batch on its last dimension, which the rank replaces
    assert weight_axes("decoder_block_0/attention/attention_output/lora_kernel_a",
                       (4, 256, 8), fsdp) == (None, "batch", None)
    assert weight_axes("decoder_block_0/pre_ffw_norm/scale", (640,), fsdp) == (None,)
    for strategy in ("single", "data_parallel"):
        assert weight_axes("token_embedding/embeddings", (256, 64),
                           plan(8, 1, strategy)) == (None, None)


def test_an_axis_is_dropped_where_it_splits_nothing_or_does_not_divide():
    sizes = {"batch": 8, "model": 1}
    assert fit_axes(("model", "batch"), (256, 64), sizes) == (None, "batch")
    assert fit_axes(("model", "batch"), (256, 60), sizes) == (None, None)
    assert fit_axes(None, (3, 3), sizes) == (None, None)
