"""benchmarks/flops.py counts what XLA counts (matmuls: within 10%) and sums its parts."""

from __future__ import annotations

import sys

import pytest

from tests.runs.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from flops import Shape, attended, training_flops


def test_attended_pairs_are_causal_and_windowed():
    assert attended(4, None) == 1 + 2 + 3 + 4
    assert attended(4, 2) == 1 + 2 + 2 + 2
    assert attended(4, 8) == attended(4, None)


def test_training_flops_add_forward_backward_and_lora_or_full():
    shape = Shape(hidden=2, heads=1, kv_heads=1, head_dim=1, ffn=1, vocab=10,
                  windows=(None,), lora_per_token=3)
    assert shape.projections == 2 * 1 + 2 * 2 * 1 + 1 * 2 + 3 * 2 * 1
    proj, attn, head = 2 * 14 * 3, 4 * 6, 2 * 2 * 10 * 2  # 3 tokens, 2 with loss
    assert training_flops(shape, [(3, 2)]) == 2 * proj + 3 * attn + 2 * head + 6 * 3 * 3
    assert training_flops(shape, [(3, 2)], full=True) == 3 * proj + 3 * attn + 3 * head


def test_counts_match_xla_on_a_tiny_gemma(tmp_path, monkeypatch):
    import jax
    import jax.numpy as jnp

    from gemma_panel.models import load_model
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    monkeypatch.setenv("GEMMA_PANEL_HOME", str(tmp_path / "home"))
    gguf = write_tiny_gemma_gguf(tmp_path / "t.gguf", "gemma3", hidden=64, heads=2,
                                 kv_heads=1, head_dim=256, ffn=128, layers=2)
    backbone = load_model(str(gguf), progress=False).backbone
    backbone.enable_lora(4)
    # query (2 heads x 256 from 64) and value (1 x 256), rank 4, per layer: x A then B per head
    assert Shape.of(backbone).lora_per_token == 2 * ((2 * 64 * 4 + 2 * 4 * 256)
                                                     + (1 * 64 * 4 + 4 * 256))
    backbone.trainable = True  # full fine-tuning: XLA's weight gradients are ours too
    shape = Shape.of(backbone)

    n = 64
    trainable = [v.value for v in backbone.trainable_variables]
    frozen = [v.value for v in backbone.non_trainable_variables]
    ids = jnp.ones((1, n), jnp.int32)

    def hidden(t, f):
        return backbone.stateless_call(t, f, {"token_ids": ids,
                                              "padding_mask": jnp.ones_like(ids)})[0].sum()

    def xla(fn):
        cost = jax.jit(fn).lower(trainable, frozen).compile().cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    layers = len(shape.windows)
    proj = 2 * shape.projections * n * layers
    attn = 4 * shape.heads * shape.head_dim * n * n * layers  # XLA computes every pair
    assert xla(hidden) == pytest.approx(proj + attn, rel=0.1)
    assert xla(jax.grad(hidden)) == pytest.approx(3 * proj + 3 * attn, rel=0.1)
