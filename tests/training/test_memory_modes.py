"""Memory modes (recipe section ``memory``) on the tiny random Gemma 3: each trains to the
float32 baseline's loss within its stated tolerance, and saves the memory it says it saves.

Tolerances (relative, loss of each of 3 optimizer steps): remat 1e-5 (the same arithmetic,
run twice); bfloat16 base 1e-3 (weights rounded to 8 mantissa bits; measured 6e-5); int8
base 2e-3 (per-channel weights and per-token inputs rounded to 8 bits; measured 2e-4).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma_panel.config import RecipeError, load_recipe
from gemma_panel.training.batches import batch_at, build_sequences, max_loss_tokens
from gemma_panel.training.step import TrainFunctions
from gemma_panel.training.trainer import load_tuned_model
from tests.training.test_batches import examples

BATCH, LENGTH = 4, 64


@functools.cache
def prepare(gguf, *overrides, length=LENGTH):
    """(TrainFunctions, sequences), one per setting: its state is copied by initial_state."""
    recipe = load_recipe(None, [f"model.source={gguf}", "train.warmup_steps=0",
                                "train.learning_rate=0.01", "lora.rank=4",
                                "lora.target_layers=[query,value,ffw_linear]",
                                f"train.batch_size={BATCH}", *overrides])
    lm = load_tuned_model(recipe)
    data = examples(24, seed=4)
    for e in data:
        e.input_ids = [min(i, lm.backbone.vocabulary_size - 1) for i in e.input_ids]
    seq = build_sequences(data, length, pack=True)
    steps = TrainFunctions(lm, recipe, 10, max_loss_tokens(seq, BATCH), 128)
    return steps, seq


def arrays(seq, step):
    b = batch_at(seq, step, BATCH, 1, 0)
    return b.inputs, b.targets, b.loss_mask, b.segment_ids


def losses(gguf, *overrides, n=3):
    steps, seq = prepare(gguf, *overrides)
    trainable, opt_state, frozen = steps.initial_state()
    out = []
    for i in range(n):
        trainable, opt_state, metrics = steps.train_step(
            trainable, opt_state, frozen, arrays(seq, i), jax.random.PRNGKey(i))
        out.append(float(metrics["loss"]))
    return np.array(out)


def frozen_bytes(steps) -> int:
    return sum(np.asarray(x).nbytes for x in steps.initial_state()[2])


@pytest.fixture(scope="module")
def baseline(tiny_gguf):
    return losses(tiny_gguf)


@pytest.mark.parametrize("overrides, rel", [
    (("memory.remat=true",), 1e-5),
    (("memory.base_weights=bfloat16",), 1e-3),
    (("memory.base_weights=int8",), 2e-3),
])
def test_loss_matches_float32_baseline(tiny_gguf, baseline, overrides, rel):
    got = losses(tiny_gguf, *overrides)
    np.testing.assert_allclose(got, baseline, rtol=rel)
    assert not np.array_equal(got, baseline) or overrides == ("memory.remat=true",)


def test_bfloat16_base_halves_the_frozen_weights(tiny_gguf):
    full, _ = prepare(tiny_gguf)
    half, seq = prepare(tiny_gguf, "memory.base_weights=bfloat16")
    assert frozen_bytes(half) == frozen_bytes(full) // 2
    trainable, opt_state, frozen = half.initial_state()
    assert {x.dtype for x in trainable} == {np.dtype("float32")}  # LoRA factors stay float32
    assert {x.dtype for x in jax.tree.leaves(opt_state) if x.ndim} == {np.dtype("float32")}
    compiled = half.train_step.lower(trainable, opt_state, frozen, arrays(seq, 0),
                                     jax.random.PRNGKey(0)).compile()
    reference = full.train_step.lower(*full.initial_state(), arrays(seq, 0),
                                      jax.random.PRNGKey(0)).compile()
    saved = reference.memory_analysis().argument_size_in_bytes \
        - compiled.memory_analysis().argument_size_in_bytes
    assert saved == frozen_bytes(full) // 2


def test_bfloat16_base_keeps_no_float32_copy_of_the_frozen_weights(tiny_gguf):
    """The Keras variables hold the step's bfloat16 arrays themselves: once the steps are
    built, the float32 weights the model was loaded with are freed (not kept beside a
    bfloat16 copy, which would take 1.5x float32's memory instead of half)."""
    import gc
    import weakref

    recipe = load_recipe(None, [f"model.source={tiny_gguf}", "lora.rank=4",
                                "memory.base_weights=bfloat16"])
    lm = load_tuned_model(recipe)
    frozen_vars = lm.backbone.non_trainable_variables
    loaded = [weakref.ref(v.value) for v in frozen_vars if v.dtype == "float32"]
    steps = TrainFunctions(lm, recipe, 10, 128, 128)
    _, _, frozen = steps.initial_state()
    gc.collect()
    assert loaded and all(ref() is None for ref in loaded)  # no float32 buffer left
    assert all(v.value is x for v, x in zip(frozen_vars, frozen))  # one copy, shared
    stored = sum(v.value.nbytes for v in frozen_vars)
    assert stored == sum(x.nbytes for x in frozen) == sum(
        np.prod(v.shape) * 2 for v in frozen_vars)  # every frozen weight in 2 bytes
    assert {v.value.dtype for v in lm.backbone.trainable_variables} == {np.dtype("float32")}


def test_int8_base_stores_a_quarter_of_the_kernels(tiny_gguf):
    full, _ = prepare(tiny_gguf)
    q, _ = prepare(tiny_gguf, "memory.base_weights=int8")
    kernels = [v for v in q.frozen_vars if v.dtype == "int8"]
    assert any("token_embedding" in v.path for v in kernels)
    assert any("attention/query" in v.path for v in kernels)
    assert frozen_bytes(q) < 0.3 * frozen_bytes(full)
    assert {x.dtype for x in q.initial_state()[0]} == {np.dtype("float32")}


def residual_bytes(steps, seq) -> int:
    """Bytes the backward pass keeps from the forward pass of one micro-batch."""
    trainable, _, frozen = steps.initial_state()
    batch = tuple(jnp.asarray(a[0]) for a in arrays(seq, 0))

    def loss(params):
        return steps._loss_terms(params, frozen, batch, None, steps.max_train_tokens)[0]

    kept = jax.eval_shape(lambda p: jax.tree.leaves(jax.vjp(loss, p)[1]), trainable)
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in kept)


def test_remat_keeps_only_the_block_inputs(tiny_gguf):
    full, seq = prepare(tiny_gguf)
    remat, _ = prepare(tiny_gguf, "memory.remat=true")
    assert residual_bytes(remat, seq) < 0.5 * residual_bytes(full, seq)
    assert "call" not in vars(remat.backbone.transformer_layers[0])  # put back after tracing


def test_lora_dropout_applies_on_int8_layers(tiny_gguf):
    """Keras calls an int8 layer's quantized_call, not call: dropout must change the loss."""
    plain = losses(tiny_gguf, "memory.base_weights=int8", n=2)
    dropped = losses(tiny_gguf, "memory.base_weights=int8", "lora.dropout=0.5", n=2)
    assert plain[0] == pytest.approx(dropped[0], rel=1e-6)  # B starts at zero
    assert abs(dropped[1] - plain[1]) > 1e-4 * plain[1]


def test_int8_lora_forward_equals_keras_without_dropout(tiny_gguf):
    from gemma_panel.models.lora import lora_layers
    from gemma_panel.training.keras_internals import int8_lora_forward

    steps, _ = prepare.__wrapped__(tiny_gguf, "memory.base_weights=int8")  # it is changed
    layer = next(x for x in lora_layers(steps.backbone) if x.name == "query")
    rng = np.random.default_rng(0)
    layer.lora_kernel_b.assign(rng.standard_normal(layer.lora_kernel_b.shape) * 0.1)
    x = jnp.asarray(rng.standard_normal((2, 5, 64)), jnp.float32)
    np.testing.assert_allclose(int8_lora_forward(layer, x, x), layer(x), rtol=1e-5, atol=1e-5)


def test_frozen_base_modes_need_lora(tiny_gguf):
    with pytest.raises(RecipeError, match="memory.base_weights"):
        load_recipe(None, [f"model.source={tiny_gguf}", "lora.enabled=false",
                           "memory.base_weights=int8"])


@pytest.mark.parametrize("base", ["int8", "bfloat16"])
def test_a_whole_run_trains_with_the_memory_modes(tiny_recipe, tmp_path, base):
    """Evaluation, sample generation and checkpoints work on the quantized / bf16 model."""
    from gemma_panel.training.trainer import train

    recipe = tiny_recipe("train.max_steps=3", "eval.every_steps=3", "memory.remat=true",
                         f"memory.base_weights={base}", "lora.dropout=0.1")
    result = train(recipe, tmp_path / "run")
    assert result.status == "succeeded" and result.step == 3
    assert np.isfinite(result.best_val_loss)
    assert (tmp_path / "run" / "checkpoints").is_dir()
