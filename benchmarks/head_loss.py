"""The LM head's loss and gradient: one matmul vs chunks recomputed in the backward pass.

    python benchmarks/head_loss.py [--tokens 896] [--vocab 262144] [--hidden 640] [--repeats 3]

Times ``gemma_panel.training.step.head_loss`` (forward and gradient with respect to the
hidden states, jitted, compilation excluded) at Gemma 3 270M's head shape on random values,
once as it runs when the logits fit in ``REMAT_LOGITS_BYTES`` (one matmul, logits kept for
the backward pass) and once forced into recomputed chunks (``REMAT_LOGITS_BYTES = 0``), the
form the trainer takes over when the logits would exceed that limit. Peak memory of the
one-matmul form: the logits, tokens x vocabulary x 4 bytes (940 MB at the defaults).
"""

from __future__ import annotations

import argparse
import statistics
import time

import gemma_panel  # noqa: F401  (sets KERAS_BACKEND=jax before Keras is imported)


def timed(step, repeats: int, max_tokens: int, args) -> float:
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    hidden = jax.random.normal(keys[0], (1, args.tokens, args.hidden), jnp.float32)
    embeddings = jax.random.normal(keys[1], (args.vocab, args.hidden), jnp.float32) * 0.02
    targets = jax.random.randint(keys[2], (1, args.tokens), 0, args.vocab)
    mask = jnp.ones((1, args.tokens), jnp.float32)

    def loss(h):
        total, count, _ = step.head_loss(h, embeddings, targets, mask, max_tokens)
        return total / count

    fn = jax.jit(jax.value_and_grad(loss))
    jax.block_until_ready(fn(hidden))  # compile
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(fn(hidden))
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=896, help="loss positions per step")
    parser.add_argument("--vocab", type=int, default=262_144)
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from gemma_panel.training import step

    chunk = step._HEAD_CHUNK
    max_tokens = -(-args.tokens // chunk) * chunk  # the trainer rounds to whole chunks
    limit = step.REMAT_LOGITS_BYTES
    if max_tokens * args.vocab * 4 > limit:
        raise SystemExit(f"{max_tokens} x {args.vocab} logits exceed REMAT_LOGITS_BYTES; "
                         "lower --tokens or --vocab")
    one = timed(step, args.repeats, max_tokens, args)
    step.REMAT_LOGITS_BYTES = 0
    chunked = timed(step, args.repeats, max_tokens, args)
    step.REMAT_LOGITS_BYTES = limit
    print(f"head loss + gradient, {max_tokens} tokens x {args.vocab} vocabulary x "
          f"{args.hidden} hidden, median of {args.repeats}:")
    print(f"  one matmul (logits kept):           {one:7.3f} s")
    print(f"  chunks of {chunk}, recomputed:      {chunked:7.3f} s")


if __name__ == "__main__":
    main()
