"""The train step against KerasHub's own forward pass, on a tiny random Gemma 3."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gemma_panel.training.batches import Sequences, batch_at, build_sequences, max_loss_tokens
from gemma_panel.training.step import TrainFunctions, head_loss
from gemma_panel.training.trainer import load_tuned_model
from tests.training.test_batches import examples


@pytest.fixture(scope="module")
def model_and_steps(tiny_gguf):
    from gemma_panel.config import load_recipe

    recipe = load_recipe(None, [f"model.source={tiny_gguf}", "train.warmup_steps=0",
                                "train.learning_rate=0.01", "lora.rank=4"])
    lm = load_tuned_model(recipe)
    return recipe, lm


def keras_nll(lm, ids, mask):
    """Per-token loss from KerasHub's own full forward pass and LM head."""
    x = np.array([ids[:-1]], dtype="int32")
    hidden = lm.backbone({"token_ids": x, "padding_mask": np.ones_like(x)})
    logits = np.asarray(lm.backbone.token_embedding(hidden, reverse=True))[0]
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]]
    return float((nll * np.asarray(mask[1:])).sum()), int(np.sum(mask[1:]))


def test_packed_loss_equals_keras_hub_per_example(model_and_steps):
    """Packed examples see only themselves: the summed loss is KerasHub's, example by example,
    and prompt tokens carry no loss."""
    recipe, lm = model_and_steps
    data = [e for e in examples(6, seed=4)]
    for e in data:
        e.input_ids = [min(i, lm.backbone.vocabulary_size - 1) for i in e.input_ids]
    seq = build_sequences(data, 64, pack=True)
    assert len(seq) < len(data)
    steps = TrainFunctions(lm, recipe, 10, 128, max_loss_tokens(seq, len(seq)))
    trainable, _, frozen = steps.initial_state()
    arrays = (seq.inputs, seq.targets, seq.loss_mask, seq.segment_ids)
    total, count, _ = steps.eval_step(trainable, frozen, arrays)
    expected = [keras_nll(lm, e.input_ids, e.loss_mask) for e in data]
    assert int(count) == sum(n for _, n in expected)
    assert float(total) == pytest.approx(sum(t for t, _ in expected), rel=1e-4)


def test_prompt_targets_do_not_change_the_loss():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((2, 8, 16)).astype("float32")
    emb = rng.standard_normal((50, 16)).astype("float32")
    targets = rng.integers(0, 50, (2, 8)).astype("int32")
    mask = np.zeros((2, 8), "int32")
    mask[:, 5:] = 1
    base = head_loss(hidden, emb, targets, mask, 128)
    changed = targets.copy()
    changed[:, :5] = (changed[:, :5] + 7) % 50  # rewrite every untrained target
    assert float(head_loss(hidden, emb, changed, mask, 128)[0]) == pytest.approx(
        float(base[0]))
    changed[:, 6] = (changed[:, 6] + 7) % 50  # a trained target does matter
    assert float(head_loss(hidden, emb, changed, mask, 128)[0]) != pytest.approx(
        float(base[0]))
    assert float(base[1]) == 6


def test_gradient_accumulation_matches_one_big_batch(model_and_steps):
    recipe, lm = model_and_steps
    seq = build_sequences(examples(16, seed=2), 32, pack=True)
    one = batch_at(seq, 0, batch_size=4, accumulation=1, seed=0)
    two = Sequences(*(a.reshape(2, 2, 32) for a in (one.inputs, one.targets, one.loss_mask,
                                                      one.segment_ids)))
    k = max_loss_tokens(seq, 4)
    results = []
    for batch in (one, two):
        steps = TrainFunctions(lm, recipe, 10, k, k)
        trainable, opt_state, frozen = steps.initial_state()
        arrays = (batch.inputs, batch.targets, batch.loss_mask, batch.segment_ids)
        new, _, metrics = steps.train_step(trainable, opt_state, frozen, arrays,
                                           jax.random.PRNGKey(0))
        results.append((float(metrics["loss"]), [np.asarray(x) for x in new]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_lora_dropout_changes_the_loss_deterministically(model_and_steps, tiny_gguf):
    from gemma_panel.config import load_recipe

    recipe, lm = model_and_steps
    seq = build_sequences(examples(8, seed=5), 32, pack=True)
    batch = batch_at(seq, 0, 2, 1, 0)  # (accumulation=1, batch, length)
    arrays = (batch.inputs[0], batch.targets[0], batch.loss_mask[0], batch.segment_ids[0])
    dropout = load_recipe(None, [f"model.source={tiny_gguf}", "lora.dropout=0.5",
                                 "lora.rank=4", "train.warmup_steps=0"])
    losses = {}
    for name, r in (("plain", recipe), ("dropout", dropout)):
        steps = TrainFunctions(lm, r, 10, 128, 128)
        trainable, _, frozen = steps.initial_state()
        # Non-zero LoRA B so the branch contributes (B starts at zero).
        trainable = [x + 0.5 for x in trainable]
        losses[name] = [float(steps._loss_terms(trainable, frozen, arrays,
                                                jax.random.PRNGKey(s), 128)[0]) for s in (1, 1, 2)]
    assert losses["plain"][0] == losses["plain"][2]  # no dropout: the key is irrelevant
    assert losses["dropout"][0] == losses["dropout"][1]  # same key, same mask
    assert losses["dropout"][0] != losses["dropout"][2]
    assert losses["dropout"][0] != losses["plain"][0]
