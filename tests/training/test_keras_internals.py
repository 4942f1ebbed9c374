"""The KerasHub internals the train step patches, against KerasHub's own forward pass.

These fail loudly when a KerasHub or Keras release renames, stops calling or changes what
``gemma_panel.training.keras_internals`` patches: the names and signatures are checked, and
each patched forward pass must equal the unpatched one where the patch should change nothing
and differ (in the one right way) where it should.
"""

from __future__ import annotations

import inspect
import warnings

import jax
import keras
import numpy as np
import pytest

from gemma_panel.models.lora import lora_layers, lora_switched_off
from gemma_panel.training import keras_internals
from gemma_panel.training.keras_internals import (
    MASK_METHOD,
    KerasInternalsChanged,
    factored_equations,
    internals_missing,
    lora_factored,
    require_internals,
    segment_attention,
)
from gemma_panel.training.trainer import load_tuned_model

IDS = np.array([[2, 9, 4, 17, 5, 8, 31, 6, 12, 3, 7, 22]], dtype="int32")


@pytest.fixture(scope="module")
def lm(tiny_gguf):
    from gemma_panel.config import load_recipe

    recipe = load_recipe(None, [f"model.source={tiny_gguf}", "lora.rank=4", "lora.alpha=8",
                                "lora.target_layers=[query,value,ffw_linear]"])
    lm = load_tuned_model(recipe)
    rng = np.random.default_rng(0)
    for layer in lora_layers(lm):  # B starts at zero: make the LoRA branch count
        shape = layer.lora_kernel_b.shape
        layer.lora_kernel_b.assign(0.2 * rng.standard_normal(shape).astype("float32"))
    return lm


def hidden(lm, ids, segments):
    return np.asarray(lm.backbone({"token_ids": ids, "padding_mask": segments > 0}))


def test_the_names_and_signatures_the_patches_rely_on_are_there(lm):
    blocks = list(lm.backbone.transformer_layers)
    assert blocks and lora_layers(lm)
    assert internals_missing(blocks, lora_layers(lm)) == []
    for block in blocks:  # the block's mask goes through the method that is wrapped
        assert f"self.{MASK_METHOD}(" in inspect.getsource(type(block).call)
    for layer in lora_layers(lm):  # the merged kernel the LoRA forward writes out unmerged
        assert "lora_alpha / self.lora_rank" in inspect.getsource(type(layer).kernel.fget)


def test_a_layer_without_the_patched_names_is_refused_in_words():
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    with pytest.raises(KerasInternalsChanged) as raised:
        require_internals(blocks=[dense], lora_layers=[dense])
    text = str(raised.value)
    assert f"Dense.{MASK_METHOD}" in text and "Dense.equation" in text
    assert "keras-hub 0.32.x" in text and keras.__version__ in text


def test_another_version_with_the_names_present_warns_once(lm, monkeypatch):
    monkeypatch.setattr(keras_internals, "WRITTEN_FOR", {"keras_hub": "9.9.", "keras": "3.15."})
    monkeypatch.setattr(keras_internals, "_warned", set())
    with pytest.warns(RuntimeWarning, match="keras-hub 9.9.x"):
        require_internals(blocks=lm.backbone.transformer_layers)
    with warnings.catch_warnings():  # once per process: the second call is quiet
        warnings.simplefilter("error")
        require_internals(blocks=lm.backbone.transformer_layers)


# -- the attention mask for packing -------------------------------------------------------------
@pytest.mark.parametrize("pad", [0, 3])
def test_one_segment_attends_as_keras_hub_does(lm, pad):
    segments = np.ones_like(IDS)
    segments[:, IDS.shape[1] - pad:] = 0
    plain = hidden(lm, IDS, segments)
    with segment_attention(lm.backbone, segments):
        patched = hidden(lm, IDS, segments)
    real = IDS.shape[1] - pad
    np.testing.assert_allclose(patched[:, :real], plain[:, :real], atol=1e-5)


def test_packed_segments_see_only_themselves(lm):
    segments = np.array([[1] * 5 + [2] * 7], dtype="int32")
    alone = hidden(lm, IDS[:, 5:], np.ones((1, 7), "int32"))  # the second example by itself
    with segment_attention(lm.backbone, segments):
        packed = hidden(lm, IDS, segments)
    np.testing.assert_allclose(packed[:, 5:], alone, atol=1e-4)
    np.testing.assert_allclose(packed[:, :5], hidden(lm, IDS[:, :5], np.ones((1, 5), "int32")),
                               atol=1e-4)
    unpatched = hidden(lm, IDS, segments)  # without the patch the second example sees the first
    assert np.abs(unpatched[:, 5:] - alone).max() > 1e-2


# -- the LoRA forward pass through the rank, with dropout ---------------------------------------
EVERY_PROJECTION = "[query,key,value,attention_output,ffw_gating,ffw_gating_2,ffw_linear]"


@pytest.fixture(scope="module")
def lm_all(tiny_gguf):
    """LoRA on every projection Gemma has: each einsum equation the factored forward sees."""
    from gemma_panel.config import load_recipe

    recipe = load_recipe(None, [f"model.source={tiny_gguf}", "lora.rank=4", "lora.alpha=8",
                                f"lora.target_layers={EVERY_PROJECTION}"])
    lm = load_tuned_model(recipe)
    rng = np.random.default_rng(1)
    for layer in lora_layers(lm):
        layer.lora_kernel_b.assign(0.2 * rng.standard_normal(layer.lora_kernel_b.shape)
                                   .astype("float32"))
    return lm


def test_every_gemma_projection_factors_through_the_rank(lm_all):
    equations = {layer.equation for layer in lora_layers(lm_all)}
    assert {"btd,ndh->btnh", "bsd,kdh->bskh", "btnh,nhd->btd", "btd,df->btf",
            "btf,fd->btd"} <= equations
    assert factored_equations("btd,ndh->btnh") == ("btd,ndr->btnr", "btnr,rh->btnh")
    assert factored_equations("btnh,nhd->btd") == ("btnh,nhr->btr", "btr,rd->btd")
    with pytest.raises(KerasInternalsChanged, match="summed"):
        factored_equations("btd,dh->bt")


def test_factored_lora_is_keras_merged_lora_on_every_projection(lm_all):
    segments = np.ones_like(IDS)
    merged = hidden(lm_all, IDS, segments)
    with lora_switched_off(lm_all):
        assert np.abs(hidden(lm_all, IDS, segments) - merged).max() > 1e-2  # LoRA counts
    with lora_factored(lora_layers(lm_all)):  # no dropout: x W + (alpha/r) (x A) B
        factored = hidden(lm_all, IDS, segments)
    np.testing.assert_allclose(factored, merged, atol=1e-4)


def test_the_factored_gradient_never_forms_a_full_size_kernel(lm_all):
    """Keras's merged kernel computes A B (kernel-sized) forward and its gradient backward;
    through the rank, no matrix product has an adapted kernel's size."""
    backbone, layers = lm_all.backbone, lora_layers(lm_all)
    kernel_sizes = {int(np.prod(layer._kernel.shape)) for layer in layers}
    trainable = [v.value for v in backbone.trainable_variables]
    frozen = [v.value for v in backbone.non_trainable_variables]
    inputs = {"token_ids": IDS, "padding_mask": np.ones_like(IDS)}

    def products(forward_pass):
        def loss(params):
            with forward_pass(layers):
                return backbone.stateless_call(params, frozen, inputs)[0].sum()
        jaxpr = jax.make_jaxpr(jax.grad(loss))(trainable)
        return [int(np.prod(e.outvars[0].aval.shape)) for e in all_equations(jaxpr.jaxpr)
                if e.primitive.name == "dot_general"]

    assert not kernel_sizes & set(products(lora_factored))
    assert kernel_sizes & set(products(keras_internals.lora_merged_kernel))  # Keras's path


def all_equations(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs nested in it (jit, checkpoint, scan)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)  # a ClosedJaxpr or a Jaxpr
            if hasattr(inner, "eqns"):
                yield from all_equations(inner)


def test_lora_forward_with_dropout_keeping_all_is_keras_merged_lora(lm):
    segments = np.ones_like(IDS)
    merged = hidden(lm, IDS, segments)
    with lora_factored(lora_layers(lm), 1e-9, jax.random.PRNGKey(0)):  # patched, keeps all
        patched = hidden(lm, IDS, segments)
    np.testing.assert_allclose(patched, merged, atol=1e-4)


def test_lora_dropout_drops_the_lora_branch_only(lm):
    segments = np.ones_like(IDS)
    tuned = hidden(lm, IDS, segments)
    with lora_switched_off(lm):
        base = hidden(lm, IDS, segments)
    assert np.abs(tuned - base).max() > 1e-2  # the LoRA branch counts
    with lora_factored(lora_layers(lm), 1 - 1e-9, jax.random.PRNGKey(0)):  # drops all of it
        all_dropped = hidden(lm, IDS, segments)
    np.testing.assert_allclose(all_dropped, base, atol=1e-4)
    with lora_factored(lora_layers(lm), 0.5, jax.random.PRNGKey(0)):
        half = hidden(lm, IDS, segments)
    assert np.abs(half - tuned).max() > 1e-2 and np.abs(half - base).max() > 1e-2
    np.testing.assert_allclose(hidden(lm, IDS, segments), tuned, atol=0)  # put back after
