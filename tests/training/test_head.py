"""The fused head (gradient formed in the forward pass) against plain autodiff."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma_panel.training import step

VOCAB, HIDDEN, ROWS, SEQ = 1000, 32, 3, 100


def _inputs(seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    hidden = jax.random.normal(keys[0], (ROWS, SEQ, HIDDEN), jnp.float32)
    embeddings = jax.random.normal(keys[1], (VOCAB, HIDDEN), jnp.float32) * 0.3
    targets = jax.random.randint(keys[2], (ROWS, SEQ), 0, VOCAB)
    mask = jax.random.bernoulli(keys[3], 0.7, (ROWS, SEQ)).astype(jnp.int32)
    return hidden, embeddings, targets, mask


def _loss_and_grad(monkeypatch, limit, trains_embedding, soft_cap, fused_limit=None):
    hidden, embeddings, targets, mask = _inputs()
    monkeypatch.setattr(step, "REMAT_LOGITS_BYTES", limit)
    monkeypatch.setattr(step, "FUSED_LOGITS_BYTES", limit if fused_limit is None
                        else fused_limit)
    max_tokens = ROWS * SEQ  # 300: rounded to whole chunks of 128 when chunked

    def loss(h):
        total, count, hits = step.head_loss(h, embeddings, targets, mask, max_tokens,
                                            soft_cap, True, trains_embedding)
        return total / count, (count, hits)

    fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (value, (count, hits)), grad = fn(hidden)
    return (float(value), float(count), float(hits), np.asarray(grad),
            str(jax.make_jaxpr(loss)(hidden)))


@pytest.mark.parametrize("soft_cap", [None, 5.0])
def test_the_fused_head_gives_plain_autodiffs_loss_hits_and_gradient(monkeypatch, soft_cap):
    """Chunked with the frozen embedding (fused) vs one matmul (logits kept) vs chunks
    recomputed (a trained embedding): one loss, one count of hits, one gradient; the
    positions without loss (30% here, and the chunks' padding) get no gradient."""
    kept = _loss_and_grad(monkeypatch, 4 << 30, False, soft_cap)
    fused = _loss_and_grad(monkeypatch, 0, False, soft_cap)
    recomputed = _loss_and_grad(monkeypatch, 0, True, soft_cap)
    for other in (fused, recomputed):
        np.testing.assert_allclose(other[0], kept[0], rtol=1e-6)
        assert other[1:3] == kept[1:3]
        np.testing.assert_allclose(other[3], kept[3], rtol=1e-5, atol=1e-8)
    mask = _inputs()[3]
    assert not fused[3][np.asarray(mask) == 0].any()
    assert np.abs(fused[3]).sum() > 0


def test_only_a_frozen_embedding_takes_the_fused_head(monkeypatch):
    assert "custom_vjp_call" in _loss_and_grad(monkeypatch, 0, False, None)[4]
    assert "custom_vjp_call" not in _loss_and_grad(monkeypatch, 0, True, None)[4]
    assert "custom_vjp_call" not in _loss_and_grad(monkeypatch, 4 << 30, False, None)[4]


def test_a_frozen_embedding_is_chunked_from_the_lower_fused_limit(monkeypatch):
    """Logits between the two limits: a frozen embedding's head goes fused, a trained
    one's stays one matmul."""
    between = {"limit": 4 << 30, "fused_limit": 0, "soft_cap": None}
    assert "custom_vjp_call" in _loss_and_grad(monkeypatch, trains_embedding=False,
                                               **between)[4]
    trained = _loss_and_grad(monkeypatch, trains_embedding=True, **between)[4]
    assert "custom_vjp_call" not in trained and "remat" not in trained
