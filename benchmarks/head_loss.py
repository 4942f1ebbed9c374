"""The LM head's loss and gradient: one matmul vs chunks recomputed vs chunks fused.

    python benchmarks/head_loss.py [--tokens 896] [--vocab 262144] [--hidden 640] [--repeats 3]

Times ``gemma_panel.training.step.head_loss`` (forward and gradient with respect to the
hidden states, jitted, compilation excluded) at Gemma 3 270M's head shape on random values,
once as it runs when the logits fit in ``REMAT_LOGITS_BYTES`` (one matmul, logits kept for
the backward pass) and once forced into recomputed chunks (``REMAT_LOGITS_BYTES = 0``), the
form the trainer takes over when the logits would exceed that limit, once with a trained
embedding (chunks recomputed in the backward pass) and once with a frozen one (each chunk's
gradient formed in its forward pass: ``gemma_panel.training.head``). Beside each time, the
temporary memory XLA's compiled function reserves (``memory_analysis``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import gemma_panel  # noqa: F401  (sets KERAS_BACKEND=jax before Keras is imported)


def timed(step, repeats: int, max_tokens: int, args, trains_embedding=True):
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    hidden = jax.random.normal(keys[0], (1, args.tokens, args.hidden), jnp.float32)
    embeddings = jax.random.normal(keys[1], (args.vocab, args.hidden), jnp.float32) * 0.02
    targets = jax.random.randint(keys[2], (1, args.tokens), 0, args.vocab)
    mask = jnp.ones((1, args.tokens), jnp.float32)

    def loss(h):
        total, count, _ = step.head_loss(h, embeddings, targets, mask, max_tokens,
                                         trains_embedding=trains_embedding)
        return total / count

    fn = jax.jit(jax.value_and_grad(loss))
    temp = fn.lower(hidden).compile().memory_analysis().temp_size_in_bytes
    jax.block_until_ready(fn(hidden))  # compile
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(fn(hidden))
        times.append(time.perf_counter() - began)
    return statistics.median(times), temp / 2**20


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
    fits = max_tokens * args.vocab * 4 <= limit
    one = timed(step, args.repeats, max_tokens, args) if fits else None
    step.REMAT_LOGITS_BYTES = 0
    chunked = timed(step, args.repeats, max_tokens, args)
    fused = timed(step, args.repeats, max_tokens, args, trains_embedding=False)
    step.REMAT_LOGITS_BYTES = limit
    print(f"head loss + gradient, {max_tokens} tokens x {args.vocab} vocabulary x "
          f"{args.hidden} hidden, median of {args.repeats} (seconds, XLA temporary MiB):")
    if one:
        print(f"  one matmul (logits kept):                 {one[0]:7.3f} s {one[1]:8.0f} MiB")
    else:
        print("  one matmul: not run (its logits exceed REMAT_LOGITS_BYTES)")
    print(f"  chunks of {chunk}, recomputed (trained E): {chunked[0]:7.3f} s "
          f"{chunked[1]:8.0f} MiB")
    print(f"  chunks of {chunk}, fused (frozen E):       {fused[0]:7.3f} s {fused[1]:8.0f} MiB")
    if one:
        print(f"  fused / one matmul: time {fused[0] / one[0]:.2f}x, memory "
              f"{fused[1] / one[1]:.2f}x; fused / recomputed: time {fused[0] / chunked[0]:.2f}x")


if __name__ == "__main__":
    main()
