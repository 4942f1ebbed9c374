"""The LM head's loss for a frozen embedding, with its gradient formed in the forward pass.

Above ``step.REMAT_LOGITS_BYTES`` of logits the head runs in chunks of loss positions. With
plain autodiff each chunk's logits are computed twice (forward, then again in the backward
pass under ``jax.checkpoint``). When the embedding is not trained the gradient needs only
``d loss / d hidden``, which each chunk can form while its logits are still there:
``(softmax(z) - onehot(target)) * dz/dlogits @ E``, a ``(chunk, hidden)`` block. The
forward pass keeps those blocks (positions x hidden x 4 bytes) and the backward pass scales
them by the incoming cotangent: one head matmul forward, one for the gradient, none
recomputed, and only one chunk of logits alive at a time.
``python benchmarks/head_loss.py`` times it beside the one-matmul and recomputed forms;
``pytest tests/training/test_head.py`` checks its loss and gradient against plain autodiff.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _chunk_terms(h_c, t_c, embeddings, soft_cap, with_accuracy):
    """(nll, hits, logits' pieces) of one chunk; ``z`` are the (capped) logits."""
    logits = jnp.matmul(h_c, embeddings.T).astype(jnp.float32)
    z = jnp.tanh(logits / soft_cap) * soft_cap if soft_cap else logits
    lse = jax.nn.logsumexp(z, axis=-1)
    picked = jnp.take_along_axis(z, t_c[:, None], axis=-1)[:, 0]
    hits = (jnp.argmax(z, axis=-1) == t_c) if with_accuracy else jnp.zeros_like(t_c)
    return lse - picked, hits.astype(jnp.float32), z, lse


def _terms(h, t, embeddings, soft_cap, with_accuracy, rows):
    """Per-position (nll, hits), ``rows`` positions at a time (no gradient)."""
    def chunk(args):
        return _chunk_terms(*args, embeddings, soft_cap, with_accuracy)[:2]

    nll, hits = jax.lax.map(chunk, (h.reshape(-1, rows, h.shape[-1]), t.reshape(-1, rows)))
    return nll.reshape(-1), hits.reshape(-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def fused_head_terms(h, t, embeddings, soft_cap=None, with_accuracy=False, rows=128):
    """Per-position (nll, hits) of float32 hidden states ``h`` (positions, hidden) against
    targets ``t`` and a frozen ``embeddings`` (vocab, hidden); positions divide by ``rows``.
    Differentiable with respect to ``h`` only (the embedding's cotangent is zero)."""
    return _terms(h, t, embeddings, soft_cap, with_accuracy, rows)


def _forward(h, t, embeddings, soft_cap, with_accuracy, rows):
    def chunk(args):
        h_c, t_c = args
        nll, hits, z, lse = _chunk_terms(h_c, t_c, embeddings, soft_cap, with_accuracy)
        dz = jnp.exp(z - lse[:, None])  # softmax, minus one at the target
        dz = dz.at[jnp.arange(t_c.shape[0]), t_c].add(-1.0)
        if soft_cap:  # d(cap * tanh(x / cap)) / dx = 1 - tanh^2
            dz = dz * (1.0 - jnp.square(z / soft_cap))
        return nll, hits, jnp.matmul(dz.astype(h_c.dtype), embeddings.astype(h_c.dtype))

    nll, hits, dh = jax.lax.map(chunk, (h.reshape(-1, rows, h.shape[-1]),
                                        t.reshape(-1, rows)))
    return (nll.reshape(-1), hits.reshape(-1)), (dh.reshape(h.shape), t, embeddings)


def _backward(soft_cap, with_accuracy, rows, residuals, cotangents):
    dh, t, embeddings = residuals
    g_nll, _ = cotangents  # hits carry no gradient
    zero_t = jnp.zeros(t.shape, jax.dtypes.float0)  # integer targets: no cotangent
    return g_nll[:, None].astype(dh.dtype) * dh, zero_t, jnp.zeros_like(embeddings)


fused_head_terms.defvjp(_forward, _backward)
