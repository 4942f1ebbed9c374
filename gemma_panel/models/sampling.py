"""How the next token is chosen: the sampling options, the compiled-shape buckets, and the
choice itself, on the device (``sample_on_device``, traced inside the generator's jitted
steps) and on the host (``choose_token``, the reference semantics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIN_LENGTH = 16


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is chosen.

    Args:
        max_new_tokens: stop after this many generated tokens.
        greedy: always take the most likely token (deterministic); the other fields are
            ignored when True.
        temperature: divides the logits; below 1 sharper, above 1 more random.
        top_k: sample among the k most likely tokens (0: no limit).
        top_p: sample among the most likely tokens whose probabilities sum to p (1: all).
        seed: random seed, so a sampled answer can be reproduced.
    """

    max_new_tokens: int = 64
    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def static(self) -> tuple[bool, int, bool]:
        """What shapes the compiled sampler: (greedy, top_k, nucleus filtering)."""
        return self.greedy, 0 if self.greedy else self.top_k, (not self.greedy
                                                             and self.top_p < 1.0)


def bucket(n: int, minimum: int = _MIN_LENGTH) -> int:
    """The power of two at or above ``n`` (at least ``minimum``)."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def batch_bucket(n: int) -> int:
    """Rows a batch of ``n`` is padded to: 1, 2, 4, then multiples of 4 (every padded row
    costs a full row of prefill and decode, so 9 rows take 12, not 16)."""
    return bucket(n, 1) if n <= 4 else -(-n // 4) * 4


def choose_token(logits: np.ndarray, options: SamplingOptions, rng: np.random.Generator) -> int:
    """Pick the next token id from one row of logits on the host (the reference semantics
    of ``sample_on_device``)."""
    if options.greedy:
        return int(np.argmax(logits))
    logits = logits.astype(np.float64) / max(options.temperature, 1e-6)
    order = np.argsort(-logits)
    if options.top_k > 0:
        order = order[: options.top_k]
    probs = np.exp(logits[order] - logits[order[0]])
    probs /= probs.sum()
    if options.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), options.top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])


def sample_on_device(logits, key, temperature, top_p, sampling):
    """Next token ids ``(batch,)`` from logits ``(batch, vocab)``, traced inside a jit.

    ``sampling`` is ``SamplingOptions.static()``; temperature and top_p are traced scalars.
    """
    import jax
    import jax.numpy as jnp

    greedy, top_k, nucleus = sampling
    if greedy:
        return jnp.argmax(logits, axis=-1).astype("int32")
    logits = logits.astype("float32") / jnp.maximum(temperature, 1e-6)
    if top_k > 0:
        values, order = jax.lax.top_k(logits, top_k)
    elif nucleus:
        order = jnp.argsort(-logits, axis=-1)
        values = jnp.take_along_axis(logits, order, axis=-1)
    else:
        return jax.random.categorical(key, logits, axis=-1).astype("int32")
    if nucleus:  # keep the most likely tokens until their probabilities reach top_p
        probs = jax.nn.softmax(values, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs
        values = jnp.where(before < top_p, values, -jnp.inf)
    choice = jax.random.categorical(key, values, axis=-1)
    return jnp.take_along_axis(order, choice[:, None], axis=-1)[:, 0].astype("int32")
