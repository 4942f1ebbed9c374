"""LoRA training on tiny random Gemma 4 backbones (dense and mixture of experts): the packed
loss equals KerasHub's loss example by example (and does not without the segment mask), a
few steps lower it, a stopped and resumed run ends with the weights of a straight one.

What LoRA adapts in Gemma 4: the attention projections (query, key, value,
attention_output) and the dense feed-forward (ffw_gating, ffw_gating_2, ffw_linear), which
the mixture-of-experts blocks keep beside their experts. The experts and the router stay
frozen: KerasHub's ``Gemma4MoEBlock`` holds the experts as plain weights, not ``EinsumDense``
layers, so Keras's LoRA cannot reach them, and ``lora.target_layers`` offers no name for them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gemma_panel.training.batches import build_sequences, max_loss_tokens
from gemma_panel.training.step import TrainFunctions
from gemma_panel.training.trainer import load_tuned_model
from tests.models.tiny_hf_gemma4 import write_tiny_gemma4
from tests.training.resume import stopped_and_resumed
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


@pytest.fixture(scope="module")
def per_example(gemma4):
    """The packed rows and KerasHub's loss of each example alone (slow: eager, once)."""
    _, lm = gemma4
    data, seq = packed(lm)
    return seq, [keras_nll(lm, e.input_ids, e.loss_mask) for e in data]


def packed_eval(recipe, lm, seq):
    steps = TrainFunctions(lm, recipe, 10, 128, max_loss_tokens(seq, len(seq)))
    trainable, _, frozen = steps.initial_state()
    total, count, _ = steps.eval_step(trainable, frozen,
                                      (seq.inputs, seq.targets, seq.loss_mask, seq.segment_ids))
    return float(total), int(count)


def packed(lm):
    data = list(examples(6, seed=4))
    for e in data:
        e.input_ids = [min(i, lm.backbone.vocabulary_size - 1) for i in e.input_ids]
    return data, build_sequences(data, 64, pack=True)


def test_packed_gemma4_loss_equals_keras_hub_per_example(gemma4, per_example):
    recipe, lm = gemma4
    seq, expected = per_example
    assert len(seq) < len(expected)  # examples share rows, so positions must restart
    total, count = packed_eval(recipe, lm, seq)
    assert count == sum(n for _, n in expected)
    assert total == pytest.approx(sum(t for t, _ in expected), rel=1e-4)


def test_without_the_segment_mask_the_packed_gemma4_loss_is_not_keras_hubs(
        gemma4, per_example, monkeypatch):
    """The equality above needs the mask: rows whose examples see each other score apart."""
    from gemma_panel.training import keras_internals

    recipe, lm = gemma4
    seq, expected = per_example
    monkeypatch.setattr(keras_internals, "segment_mask",
                        lambda ids: ((ids[:, :, None] > 0) & (ids[:, None, :] > 0)).astype("int32"))
    total, _ = packed_eval(recipe, lm, seq)
    assert abs(total / sum(t for t, _ in expected) - 1) > 1e-3


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


def test_lora_adapts_attention_and_dense_feed_forward_never_the_experts(gemma4):
    """Every target name gets its adapter in every block; the experts and router (MoE) are
    frozen inputs of the step, and the dense feed-forward's adapters do learn."""
    import jax

    from gemma_panel.config import load_recipe
    from gemma_panel.config.schema import LORA_TARGETS
    from gemma_panel.models.lora import lora_layers

    recipe = load_recipe(None, [f"model.source={gemma4[0].model.source}", "lora.rank=4",
                                f"lora.target_layers=[{','.join(LORA_TARGETS)}]",
                                "train.warmup_steps=0", "train.learning_rate=0.01"])
    lm = load_tuned_model(recipe)
    blocks = lm.backbone.transformer_layers
    adapted = lora_layers(lm)
    assert sorted(x.name for x in adapted) == sorted(LORA_TARGETS * len(blocks))
    steps = TrainFunctions(lm, recipe, 10, 128, 128)
    frozen = {v.path for v in steps.frozen_vars}
    experts = [v.path for v in lm.backbone.weights if "moe" in v.path]
    assert bool(experts) == ("moe" in recipe.model.source)
    assert set(experts) <= frozen  # the expert bank and the router
    assert all("lora" in v.path for v in steps.trainable_vars)
    _, seq = packed(lm)
    batch = tuple(a[None] for a in (seq.inputs, seq.targets, seq.loss_mask, seq.segment_ids))
    trainable, _, _ = steps.train_step(*steps.initial_state(), batch, jax.random.key(0))
    learned = {v.path.split("/")[-2] for v, x in zip(steps.trainable_vars, trainable)
               if "lora_kernel_b" in v.path and np.abs(np.asarray(x)).max() > 0}
    assert learned == set(LORA_TARGETS)  # B starts at zero: each got a gradient


def test_a_stopped_and_resumed_gemma4_run_ends_with_the_straight_runs_weights(
        gemma4, tiny_recipe, tmp_path):
    recipe = tiny_recipe(f"model.source={gemma4[0].model.source}", "lora.dropout=0.1",
                         "lora.target_layers=[query,value,ffw_linear]", "eval.every_steps=6")
    straight, resumed = stopped_and_resumed(recipe, tmp_path)
    for a, b in zip(trained(straight), trained(resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert all(np.abs(a).max() > 0 for a in trained(resumed))  # A and every B moved off 0


def trained(result):
    return [np.asarray(v.value) for v in result.model.backbone.trainable_variables]


def test_positions_restart_in_every_packed_example():
    from gemma_panel.training.step import segment_positions

    ids = np.array([[1, 1, 1, 2, 2, 0], [3, 3, 3, 3, 0, 0]])
    assert np.asarray(segment_positions(ids)).tolist() == [[0, 1, 2, 0, 1, 0],
                                                           [0, 1, 2, 3, 0, 1]]
