"""The FLOP count counts what XLA counts (matmuls: within 10%) and sums its parts, and the
progress line carries the MFU it gives against the peak measured at start-up."""

from __future__ import annotations

import io
import re

import pytest

from gemma_panel.training.events import StdoutSink
from gemma_panel.training.flops import (
    PEAK_FILE,
    MfuMeter,
    Shape,
    attended,
    measured_peak,
    packed_examples,
    training_flops,
)


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


def test_a_tiny_gemma_step_is_the_hand_counted_figure(tiny_gguf):
    from gemma_panel.config import load_recipe
    from gemma_panel.training.trainer import load_tuned_model

    lm = load_tuned_model(load_recipe(None, [f"model.source={tiny_gguf}", "lora.rank=4",
                                             "lora.target_layers=[query,value]"]))
    # Two examples packed in one row: 8 tokens (3 with loss) and 2 tokens (1 with loss).
    segments = [[1] * 8 + [2] * 2 + [0] * 2]
    loss = [[0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0]]
    assert packed_examples(segments, loss) == [(8, 3), (2, 1)]
    # d=64, 2 query heads and 1 key/value head of 256, ffn 128, vocabulary 384, 2 layers,
    # each with a 6-token sliding window; LoRA rank 4 on query and value.
    proj = 64 * 512 + 2 * 64 * 256 + 512 * 64 + 3 * 64 * 128  # 122,880 MACs a token a layer
    lora = 2 * ((2 * 64 * 4 + 2 * 4 * 256) + (64 * 4 + 4 * 256))  # 7,680 MACs a token

    def example(n, pairs, m):  # forward + input gradients + LoRA's forward and 2 gradients
        forward = 2 * proj * n * 2 + 4 * 512 * pairs * 2 + 2 * 64 * 384 * m
        backward = 2 * proj * n * 2 + 2 * 4 * 512 * pairs * 2 + 2 * 64 * 384 * m
        return forward + backward + 3 * 2 * lora * n

    by_hand = example(8, 21 + 2 * 6, 3) + example(2, 3, 1)
    assert by_hand == 8_933_376 + 2_193_408  # worked out on paper
    meter = MfuMeter(Shape.of(lm.backbone), full=False, peak_flops=1e9)
    assert meter.step_flops(segments, loss) == by_hand
    assert meter.mfu(segments, loss, 0.01) == pytest.approx(by_hand / 0.01 / 1e9)


def test_the_peak_is_measured_once_and_cached_in_the_home(tmp_path):
    peak, cached = measured_peak("float32", home=tmp_path)
    assert peak > 1e8 and not cached and (tmp_path / PEAK_FILE).is_file()
    assert measured_peak("float32", home=tmp_path) == (peak, True)


def test_the_progress_line_shows_mfu(tiny_recipe, tmp_path):
    from gemma_panel.training import train

    stream = io.StringIO()
    train(tiny_recipe("train.max_steps=2", "eval.every_steps=100", "eval.num_samples=0",
                      "eval.task_examples=0"), tmp_path / "run", StdoutSink(stream))
    text = stream.getvalue()
    assert "MFU against a measured peak of" in text
    line = re.compile(r"^step .*\| MFU ([0-9.]+)% \|", re.MULTILINE)
    shares = [float(x) for x in line.findall(text)]
    assert len(shares) == 2 and all(0 <= x <= 100 for x in shares)
    assert shares[-1] > 0  # the first step's time includes compiling it
