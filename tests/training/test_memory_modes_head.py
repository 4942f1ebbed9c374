"""The LM head with a bfloat16-stored tied embedding (``memory.base_weights=bfloat16``):
the same loss, hits and hidden-state gradient as the head on the widened embedding, and
no float32 copy of the whole embedding in the compiled train step (XLA's memory analysis).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma_panel.training import step as step_module
from gemma_panel.training.step import head_loss
from tests.training.test_memory_modes import arrays, prepare


@pytest.mark.parametrize("vocab, soft_cap, keep_logits", [
    (384, None, True),  # 8 chunks of 48 rows, their logits kept for the backward pass
    (389, 30.0, False),  # 8 of 49 and a tail of 46, soft-capped, recomputed
])
def test_bfloat16_head_equals_the_head_on_the_widened_embedding(monkeypatch, keep_logits,
                                                                 vocab, soft_cap):
    rng = np.random.default_rng(2)
    hidden = jnp.asarray(rng.standard_normal((2, 40, 16)), jnp.float32)
    narrow = jnp.asarray(rng.standard_normal((vocab, 16)), jnp.bfloat16)
    targets = jnp.asarray(rng.integers(0, vocab, (2, 40)), jnp.int32)
    mask = jnp.asarray(rng.random((2, 40)) < 0.8, jnp.int32)
    if not keep_logits:
        monkeypatch.setattr(step_module, "REMAT_LOGITS_BYTES", 0)

    def run(embeddings):
        def loss(h):
            total, count, hits = head_loss(h, embeddings, targets, mask, 128, soft_cap, True)
            return total / count, hits

        (value, hits), grad = jax.value_and_grad(loss, has_aux=True)(hidden)
        return float(value), float(hits), np.asarray(grad)

    got, want = run(narrow), run(narrow.astype(jnp.float32))
    assert got[0] == pytest.approx(want[0], rel=1e-6)
    assert got[1] == want[1] > 0
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-7)


def step_bytes(steps, seq, frozen) -> tuple[int, int]:
    trainable, opt_state, _ = steps.initial_state()
    analysis = steps.train_step.lower(trainable, opt_state, frozen, arrays(seq, 0),
                                      jax.random.PRNGKey(0)).compile().memory_analysis()
    return analysis.argument_size_in_bytes, analysis.temp_size_in_bytes


def test_bfloat16_embedding_adds_no_float32_copy_to_the_step(tiny_gguf):
    """The same bfloat16-base step compiled twice, its embedding once as stored (bfloat16)
    and once widened to float32: storing it narrow must save memory, not add a float32
    copy of it to the step's temporaries (before: +1 copy, 2x what bfloat16 saved)."""
    steps, seq = prepare(tiny_gguf, "memory.base_weights=bfloat16")
    frozen = steps.initial_state()[2]
    i = steps._embedding_index
    assert frozen[i].dtype == jnp.bfloat16
    wide = [x.astype(jnp.float32) if j == i else x for j, x in enumerate(frozen)]
    copy = frozen[i].size * 4  # one float32 copy of the embedding
    (arg_narrow, temp_narrow), (arg_wide, temp_wide) = (step_bytes(steps, seq, frozen),
                                                        step_bytes(steps, seq, wide))
    assert arg_wide - arg_narrow == copy // 2
    assert temp_narrow - temp_wide < copy // 2  # at most chunks of it widen at a time
    assert arg_narrow + temp_narrow < arg_wide + temp_wide
