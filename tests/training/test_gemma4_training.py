"""LoRA training on tiny random Gemma 4 backbones (dense and mixture of experts): the packed
loss equals KerasHub's loss example by example, and a few steps lower it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gemma_panel.training.batches import build_sequences, max_loss_tokens
from gemma_panel.training.step import TrainFunctions
from gemma_panel.training.trainer import load_tuned_model
from tests.models.tiny_hf_gemma4 import write_tiny_gemma4
from tests.training.test_batches import examples


@pytest.fixture(scope="module", params=["dense", "moe"])
def gemma4(request, tmp_path_factory):
    from gemma_panel.config import load_recipe

    folder = tmp_path_factory.mktemp(f"gemma4-{request.param}") / "hf"
    write_tiny_gemma4(folder, request.param)
    recipe = load_recipe(None, [f"model.source={folder}", "train.warmup_steps=0",
                                "train.learning_rate=0.01", "lora.rank=4"])
    return recipe, load_tuned_model(recipe)


def keras_nll(lm, ids, mask):
    """Per-token loss of one example alone, from KerasHub's own forward pass and head."""
    x = np.array([ids[:-1]], dtype="int32")
    hidden = lm.backbone({"token_ids": x, "padding_mask": np.ones_like(x),
                          "position_ids": np.arange(x.shape[1], dtype="int32")[None]})
    logits = np.asarray(lm.backbone.token_embedding(hidden, reverse=True), dtype="float64")[0]
    cap = lm.backbone.final_logit_soft_cap
    if cap:
        logits = np.tanh(logits / cap) * cap
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]]
    return float((nll * np.asarray(mask[1:])).sum()), int(np.sum(mask[1:]))


def packed(lm):
    data = list(examples(6, seed=4))
    for e in data:
        e.input_ids = [min(i, lm.backbone.vocabulary_size - 1) for i in e.input_ids]
    return data, build_sequences(data, 64, pack=True)


def test_packed_gemma4_loss_equals_keras_hub_per_example(gemma4):
    recipe, lm = gemma4
    data, seq = packed(lm)
    assert len(seq) < len(data)  # examples share rows, so positions must restart
    steps = TrainFunctions(lm, recipe, 10, 128, max_loss_tokens(seq, len(seq)))
    trainable, _, frozen = steps.initial_state()
    total, count, _ = steps.eval_step(trainable, frozen,
                                      (seq.inputs, seq.targets, seq.loss_mask, seq.segment_ids))
    expected = [keras_nll(lm, e.input_ids, e.loss_mask) for e in data]
    assert int(count) == sum(n for _, n in expected)
    assert float(total) == pytest.approx(sum(t for t, _ in expected), rel=1e-4)


def test_lora_steps_lower_the_gemma4_loss_and_train_only_the_adapters(gemma4):
    recipe, lm = gemma4
    _, seq = packed(lm)
    steps = TrainFunctions(lm, recipe, 10, 128, max_loss_tokens(seq, len(seq)))
    trainable, opt_state, frozen = steps.initial_state()
    names = [v.path for v in lm.backbone.trainable_variables]
    assert names and all("lora" in n for n in names)
    batch = tuple(a[None] for a in (seq.inputs, seq.targets, seq.loss_mask, seq.segment_ids))
    import jax

    losses = []
    for i in range(6):
        trainable, opt_state, metrics = steps.train_step(trainable, opt_state, frozen, batch,
                                                         jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert all(b < a for a, b in itertools.pairwise(losses)), losses  # every step helps
    assert losses[-1] < losses[0] - 0.02, losses


def test_positions_restart_in_every_packed_example():
    from gemma_panel.training.step import segment_positions

    ids = np.array([[1, 1, 1, 2, 2, 0], [3, 3, 3, 3, 0, 0]])
    assert np.asarray(segment_positions(ids)).tolist() == [[0, 1, 2, 0, 1, 0],
                                                           [0, 1, 2, 3, 0, 1]]
