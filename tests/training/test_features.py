"""Advertised training features, each run on a tiny random Gemma: full fine-tuning, the
chunked LM head, Gemma 2, gradient accumulation and bfloat16 through ``train()``, and
``eval.sample_prompts``."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma_panel.training import step as step_module
from gemma_panel.training import train
from gemma_panel.training.batches import build_sequences, max_loss_tokens
from gemma_panel.training.step import TrainFunctions, head_loss
from gemma_panel.training.trainer import load_tuned_model
from tests.training.test_batches import examples
from tests.training.test_step import keras_nll
from tests.training.test_trainer import Recorder, trained_weights


def weights(backbone):
    return {v.path: np.asarray(v.value, dtype=np.float32) for v in backbone.weights}


# -- full fine-tuning -------------------------------------------------------------------------
def test_full_fine_tuning_trains_every_weight_including_the_tied_head(tiny_recipe, tmp_path):
    recipe = tiny_recipe("lora.enabled=false", "train.learning_rate=0.001")
    before = weights(load_tuned_model(recipe).backbone)
    sink = Recorder()
    result = train(recipe, tmp_path, sink)
    backbone = result.model.backbone
    assert result.status == "succeeded"
    assert not any(getattr(layer, "lora_enabled", False)
                   for layer in backbone._flatten_layers(include_self=False))
    assert sink.start["trainable_params"] == backbone.count_params()
    after = weights(backbone)
    assert set(after) == set(before)
    unchanged = [name for name in after if np.array_equal(after[name], before[name])]
    assert unchanged == []  # the embedding (also the LM head) and every norm moved
    losses = [v for _, v in sink.series("loss")]
    assert losses[-1] < losses[0]


# -- the chunked, recomputed LM head ----------------------------------------------------------
# 272 positions: not whole chunks of 128, which the chunked head rounds up to itself
@pytest.mark.parametrize(("soft_cap", "max_tokens"), [(None, 256), (5.0, 256), (None, 272)])
def test_chunked_head_gives_the_loss_and_gradients_of_the_one_matmul_head(
        soft_cap, max_tokens, monkeypatch):
    rng = np.random.default_rng(1)
    hidden = jnp.asarray(rng.standard_normal((2, 160, 16)), jnp.float32)
    emb = jnp.asarray(rng.standard_normal((50, 16)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 50, (2, 160)), jnp.int32)
    mask = jnp.asarray(rng.random((2, 160)) < 0.8, jnp.int32)  # > 128: two chunks of 128

    def run():
        def loss(h, e):
            total, count, hits = head_loss(h, e, targets, mask, max_tokens, soft_cap, True)
            return total / count, (total, hits)

        grad_fn = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        jaxpr = str(jax.make_jaxpr(grad_fn)(hidden, emb))
        (_, (total, hits)), grads = grad_fn(hidden, emb)
        return float(total), float(hits), [np.asarray(g) for g in grads], jaxpr

    whole = run()
    monkeypatch.setattr(step_module, "REMAT_LOGITS_BYTES", 0)  # every head is chunked
    chunked = run()
    assert "remat" in chunked[3] and "remat" not in whole[3]  # two real paths
    assert chunked[0] == pytest.approx(whole[0], rel=1e-5) and chunked[1] == whole[1]
    for a, b in zip(chunked[2], whole[2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert np.abs(whole[2][1]).max() > 0  # the embedding gets a gradient through the head


# -- Gemma 2 ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma2(tiny_gemma2_gguf):
    from gemma_panel.config import load_recipe

    recipe = load_recipe(None, [f"model.source={tiny_gemma2_gguf}", "train.warmup_steps=0",
                                "lora.rank=4"])
    return recipe, load_tuned_model(recipe)


def test_gemma2_packed_loss_is_keras_hubs_with_soft_cap_and_sliding_window(gemma2):
    recipe, lm = gemma2
    backbone = lm.backbone
    assert backbone.final_logit_soft_cap == 30.0 and backbone.sliding_window_size == 6
    data = examples(6, seed=4)
    for e in data:
        e.input_ids = [min(i, backbone.vocabulary_size - 1) for i in e.input_ids]
    assert max(len(e.input_ids) for e in data) > 6  # longer than the sliding window
    seq = build_sequences(data, 64, pack=True)
    steps = TrainFunctions(lm, recipe, 10, 128, max_loss_tokens(seq, len(seq)))
    assert steps.soft_cap == 30.0
    trainable, _, frozen = steps.initial_state()
    total, count, _ = steps.eval_step(trainable, frozen,
                                      (seq.inputs, seq.targets, seq.loss_mask, seq.segment_ids))
    expected = [keras_nll(lm, e.input_ids, e.loss_mask) for e in data]
    assert int(count) == sum(n for _, n in expected)
    assert float(total) == pytest.approx(sum(t for t, _ in expected), rel=1e-5)


def test_gemma2_trains_through_train(tiny_recipe, tiny_gemma2_gguf, tmp_path):
    sink = Recorder()
    result = train(tiny_recipe(f"model.source={tiny_gemma2_gguf}", "train.max_steps=12",
                               "eval.every_steps=12"), tmp_path, sink)
    assert result.status == "succeeded" and result.step == 12
    losses = [v for _, v in sink.series("loss")]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.5
    val = sink.series("val_loss")
    assert val[-1][1] < val[0][1]


# -- gradient accumulation through train() -------------------------------------------------------
def test_accumulated_steps_through_train_equal_the_big_batch_steps(tiny_recipe, tmp_path):
    runs = {}
    for name, batch, acc in (("big", 4, 1), ("accumulated", 2, 2)):
        sink = Recorder()
        result = train(tiny_recipe(f"train.batch_size={batch}",
                                   f"train.gradient_accumulation={acc}", "train.max_steps=3",
                                   "eval.every_steps=3", "train.log_every=1"),
                       tmp_path / name, sink)
        runs[name] = (sink, trained_weights(result))
    big, accumulated = runs["big"], runs["accumulated"]
    assert big[0].start["tokens_per_step"] == accumulated[0].start["tokens_per_step"]
    for name in ("loss", "grad_norm"):
        a, b = big[0].series(name), accumulated[0].series(name)
        assert [s for s, _ in a] == [1, 2, 3]
        np.testing.assert_allclose([v for _, v in b], [v for _, v in a], rtol=1e-5)
    for a, b in zip(big[1], accumulated[1]):  # float32 sums in another order: to ~1e-6
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3 * np.abs(a).max())
    assert any(np.abs(a).max() > 0 for a in big[1])


# -- bfloat16 --------------------------------------------------------------------------------------
def test_bfloat16_and_mixed_bfloat16_train_close_to_float32(tiny_recipe, tmp_path):
    runs = {}
    for dtype in ("float32", "bfloat16", "mixed_bfloat16"):
        sink = Recorder()
        result = train(tiny_recipe(f"model.dtype={dtype}", "train.log_every=1"),
                       tmp_path / dtype, sink)
        assert result.status == "succeeded"
        runs[dtype] = (result.model.backbone, [v for _, v in sink.series("loss")])
    # bfloat16 stores the frozen weights in bfloat16; mixed keeps float32 weights. Both
    # compute in bfloat16; LoRA's trainable kernels stay float32 in all three.
    for dtype, stored in (("bfloat16", "bfloat16"), ("mixed_bfloat16", "float32")):
        backbone, losses = runs[dtype]
        assert {v.dtype for v in backbone.non_trainable_variables} == {stored}
        assert {v.dtype for v in backbone.trainable_variables} == {"float32"}
        assert backbone.dtype_policy.compute_dtype == "bfloat16"
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
        # Same data, same start: the first loss is float32's within bfloat16's precision.
        full = runs["float32"][1][0]
        assert losses[0] == pytest.approx(full, rel=2e-2) and losses[0] != full


# -- eval.sample_prompts ---------------------------------------------------------------------------
def test_sample_prompts_are_answered_in_the_training_format_before_and_after(tiny_recipe,
                                                                            tmp_path):
    from gemma_panel.models.generation import SamplingOptions, StreamingGenerator

    prompts = ["Add one to 7.", "What is two plus two?"]
    sink = Recorder()
    recipe = tiny_recipe('eval.sample_prompts=["Add one to 7.", "What is two plus two?"]')
    assert recipe.eval.sample_prompts == prompts
    base_lm = load_tuned_model(recipe)
    result = train(recipe, tmp_path, sink)
    turns = [f"<start_of_turn>user\n{p}<end_of_turn>\n<start_of_turn>model\n" for p in prompts]
    options = SamplingOptions(max_new_tokens=recipe.eval.max_new_tokens)
    base = [StreamingGenerator(base_lm).generate(t, options) for t in turns]
    tuned = [StreamingGenerator(result.model).generate(t, options) for t in turns]
    assert [step for step, _ in sink.samples] == [3, 6]
    for step, samples in sink.samples:
        assert [s["prompt"] for s in samples] == turns
        assert [s["base"] for s in samples] == base
    assert [s["tuned"] for s in sink.samples[-1][1]] == tuned
    assert json.loads((tmp_path / "base_samples.json").read_text()) == base


# -- the shipped recipes, end to end on the tiny model ----------------------------------------------
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_classification_recipe_trains_on_labels_and_scores_the_generated_ones(
        tiny_gguf, tmp_path, monkeypatch):
    from gemma_panel.config import load_recipe
    from gemma_panel.evaluation import accuracy, macro_f1

    monkeypatch.chdir(REPO)
    # Full fine-tuning: LoRA on a random tiny model does not learn to say a label in 60
    # steps (validation loss 29 -> 12.6, it answers newlines); every weight does (-> 0.25).
    recipe = load_recipe("recipes/classification.yaml", [
        f"model.source={tiny_gguf}", "train.max_steps=60", "train.learning_rate=0.01",
        "lora.enabled=false", "eval.every_steps=60", "eval.num_samples=6", "eval.task_examples=6",
        "train.checkpoint_every=60"])
    sink = Recorder()
    result = train(recipe, tmp_path, sink)
    assert result.status == "succeeded" and sink.start["task"] == "classification"
    labels = sorted({line.rsplit(",", 1)[1] for line in
                     (REPO / recipe.data.train_path).read_text().splitlines()[1:]})
    step, samples = sink.samples[-1]
    assert step == 60 and len(samples) == 6
    for s in samples:  # the prompt lists every label; the reference is one of them
        assert all(label in s["prompt"] for label in labels) and s["reference"] in labels
    # The task rows are the sample rows here, so the metrics must be the samples' scores.
    metrics = sink.metrics[-1][2]
    tuned, refs = [s["tuned"] for s in samples], [s["reference"] for s in samples]
    assert metrics["accuracy"] == pytest.approx(accuracy(tuned, refs))
    assert metrics["macro_f1"] == pytest.approx(macro_f1(tuned, refs))
    assert metrics["accuracy"] > 0 and metrics["macro_f1"] > 0  # it answers with labels
    val = sink.series("val_loss")
    assert val[-1][1] < 0.5 * val[0][1]


def test_pretraining_recipe_trains_every_token_and_continues_held_out_openings(
        tiny_gguf, tmp_path, monkeypatch):
    from gemma_panel.config import load_recipe

    monkeypatch.chdir(REPO)
    recipe = load_recipe("recipes/pretraining.yaml", [
        f"model.source={tiny_gguf}", "train.max_steps=6", "eval.every_steps=6",
        "eval.max_new_tokens=8", "data.sequence_length=128", "train.learning_rate=0.003"])
    sink = Recorder()
    result = train(recipe, tmp_path, sink)
    assert result.status == "succeeded" and sink.start["task"] == "completion"
    metrics = sink.metrics[-1][2]
    assert "val_loss" in metrics and not {"accuracy", "exact_match"} & set(metrics)
    text = (REPO / recipe.data.train_path).read_text()
    _, samples = sink.samples[-1]
    shown = min(3, sink.start["validation_examples"])
    assert len(samples) == shown and len({s["prompt"] for s in samples}) == shown > 1
    for s in samples:  # an opening of the essay, and the rest of its chunk as reference
        assert s["prompt"].strip() and (s["prompt"] + s["reference"]).strip() in text
    val = sink.series("val_loss")
    assert val[-1][1] < val[0][1]
