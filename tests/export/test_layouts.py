"""Name and factor layouts that need no model: GGUF names, PEFT factors, Ollama Modelfile."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_panel.export.gguf import gguf_tensor_name, write_modelfile
from gemma_panel.models.gguf_import import _BLOCK_NAMES, _TOP_NAMES, hf_tensor_name


@pytest.mark.parametrize("arch", ["gemma", "gemma2", "gemma3"])
def test_gguf_names_are_the_import_table_in_reverse(arch):
    names = [f"blk.7.{short}.weight" for short in _BLOCK_NAMES[arch]]
    names += [f"{top}.weight" for top in _TOP_NAMES]
    for name in names:
        hf = hf_tensor_name(arch, name)
        assert hf is not None and gguf_tensor_name(arch, hf) == name
    assert gguf_tensor_name(arch, "model.layers.0.mlp.experts.weight") is None


def _hf_matrix(kernel, equation):
    """A Keras kernel as the Hugging Face (out, in) weight, as KerasHub's exporter lays it."""
    if equation == "btd,ndh->btnh":  # query: (heads, hidden, head_dim)
        n, d, h = kernel.shape
        return np.transpose(kernel, (1, 0, 2)).reshape(d, n * h).T
    if equation == "btnh,nhd->btd":  # attention output: (heads, head_dim, hidden)
        n, h, d = kernel.shape
        return np.transpose(kernel, (2, 0, 1)).reshape(d, n * h)
    return kernel.T  # feed-forward: (in, out)


@pytest.mark.parametrize("name, equation, shape, out_shape", [
    ("query", "btd,ndh->btnh", (3, 8, 4), (None, 3, 4)),
    ("attention_output", "btnh,nhd->btd", (3, 4, 8), (None, 8)),
    ("ffw_gating", "btd,df->btf", (8, 12), (None, 12)),
])
def test_peft_factors_reproduce_the_keras_lora_update_exactly(name, equation, shape, out_shape):
    import keras

    from gemma_panel.export.peft import peft_factors

    layer = keras.layers.EinsumDense(equation, output_shape=out_shape, name=name)
    inputs = (1, 5, 8) if name != "attention_output" else (1, 5, 3, 4)
    layer.build(inputs)
    layer.enable_lora(2, lora_alpha=6.0)
    rng = np.random.default_rng(0)
    layer.lora_kernel_a.assign(rng.standard_normal(layer.lora_kernel_a.shape))
    layer.lora_kernel_b.assign(rng.standard_normal(layer.lora_kernel_b.shape))
    base = _hf_matrix(np.asarray(layer._kernel.value), equation)
    merged = _hf_matrix(np.asarray(layer.kernel), equation)
    lora_a, lora_b, rank, alpha = peft_factors(layer)
    assert lora_a.shape == (rank, base.shape[1]) and lora_b.shape == (base.shape[0], rank)
    assert rank == (2 * shape[0] if name == "query" else 2)
    np.testing.assert_allclose(base + (alpha / rank) * lora_b @ lora_a, merged, atol=1e-5)
    assert np.abs(merged - base).max() > 0.1  # the update is not trivially zero


def test_modelfile_points_at_the_gguf_and_stops_at_end_of_turn(tmp_path):
    from gemma_panel.export.gguf_check import check_modelfile
    from gemma_panel.export.verify import Verification

    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    write_modelfile(tmp_path)
    text = (tmp_path / "Modelfile").read_text()
    assert "FROM ./model.gguf" in text and "<start_of_turn>model" in text
    check = Verification()
    check_modelfile(check, tmp_path, "model.gguf")
    assert check.passed
    (tmp_path / "model.gguf").unlink()
    check = Verification()
    check_modelfile(check, tmp_path, "model.gguf")
    assert not check.passed


def test_carries_lora_judges_the_position_along_the_lora_effect_against_the_measured_noise():
    from gemma_panel.export.verify import Verification, carries_lora

    rng = np.random.default_rng(0)
    base = rng.standard_normal((1, 8, 50))
    effect = 0.3 * rng.standard_normal(base.shape)
    tuned = base + effect

    def judge(exported, consumer_base):
        check = Verification()
        carries_lora(check, "carried", exported, tuned, base, consumer_base)
        return check.checks[0]

    # runtime noise far below the effect: the tuned export passes, the base export fails
    noise = 1e-4 * rng.standard_normal(base.shape)
    assert judge(tuned + noise, base + noise)["passed"]
    assert not judge(base + noise, base + noise)["passed"]
    # a quantized consumer: its error is 3x the whole effect, yet mostly not along it
    quant = 3 * rms_like(effect) * rng.standard_normal(base.shape)
    passed = judge(tuned + quant, base + quant)
    assert passed["passed"] and passed["rms_from_tuned"] > passed["lora_effect"]
    failed = judge(base + quant, base + quant)
    assert not failed["passed"] and failed["margin"] < 0
    # half the LoRA is not "the LoRA carried"
    assert not judge(base + effect / 2 + noise, base + noise)["passed"]
    # a constant added to a position's logits changes no probability: not the LoRA's effect
    shifted = Verification()
    carries_lora(shifted, "carried", base + 2.0 + noise, tuned + 2.0, base, base + noise)
    assert not shifted.passed
    # the bound is 3x the noise measured on the base: an effect within it cannot pass
    assert not judge(tuned, base + 0.5 * effect)["passed"]


def rms_like(values):
    return float(np.sqrt(np.mean(np.square(values))))


def test_a_failed_lora_check_says_what_to_do_and_a_real_mismatch_calls_itself_a_bug():
    from gemma_panel.export.verify import Verification, VerificationError

    small = Verification()
    small.check("gguf_carries_lora", False, "margin 0.0004 must exceed 0.0008")
    with pytest.raises(VerificationError, match="export a finer type") as caught:
        small.require("gguf")
    assert "bug" not in str(caught.value)
    broken = Verification()
    broken.check("gguf_carries_lora", False, "margin below bound")
    broken.check("logits_match", False, "max abs diff 3.2")
    with pytest.raises(VerificationError, match="This is a bug in the exporter"):
        broken.require("gguf")
