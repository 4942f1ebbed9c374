"""LoRA in one place: enabling it with alpha, its layers, and the adapter file pair."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gemma_panel.models.lora import (
    LORA_CONFIG,
    LORA_FILE,
    enable_lora,
    load_lora_adapter,
    lora_layers,
    lora_settings,
    lora_switched_off,
    write_lora_adapter,
)
from tests.models.tiny_gguf import write_tiny_gemma_gguf

PACKAGE = Path(__file__).resolve().parents[2] / "gemma_panel"
# What only models/lora.py may say: Keras's private layer walk and KerasHub's LoRA calls.
LORA_INTERNALS = re.compile(r"_flatten_layers|lora_enabled|\.enable_lora\(|"
                            r"save_lora_weights\(|load_lora_weights\(|\.lora_alpha\s*=")


def test_only_models_lora_reaches_into_keras_lora():
    home = PACKAGE / "models" / "lora.py"
    found = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != home
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if LORA_INTERNALS.search(line) and not line.lstrip().startswith(("#", "*"))
             and "``" not in line]
    assert found == []


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_gemma_gguf(tmp_path_factory.mktemp("lora") / "tiny.gguf", "gemma3",
                                 hidden=64, heads=2, kv_heads=1, head_dim=32, ffn=128,
                                 layers=2)


def logits(lm):
    x = np.array([[2, 5, 7, 11, 3]], dtype="int32")
    hidden = lm.backbone({"token_ids": x, "padding_mask": np.ones_like(x)})
    return np.asarray(lm.backbone.token_embedding(hidden, reverse=True))


def test_adapter_files_carry_alpha_and_targets_to_a_fresh_base(tiny_path, tmp_path):
    from gemma_panel.models import load_model

    lm = load_model(str(tiny_path), progress=False)
    layers = enable_lora(lm, rank=2, alpha=7.0, target_layers=["query", "ffw_linear"])
    assert layers == lora_layers(lm) and len(layers) == 4  # 2 blocks x 2 targets
    assert {layer.lora_alpha for layer in layers} == {7.0}
    assert lora_settings(lm) == {"rank": 2, "alpha": 7.0, "layers": 4,
                                 "target_layers": ["ffw_linear", "query"]}
    base = logits(lm)
    for layer in layers:  # B starts at zero: give the LoRA something to carry
        layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.05, "float32"))
    tuned = logits(lm)
    assert np.abs(tuned - base).max() > 1e-3
    with lora_switched_off(lm):
        np.testing.assert_allclose(logits(lm), base, atol=1e-6)

    config = write_lora_adapter(lm, tmp_path, base_model=str(tiny_path))
    assert json.loads((tmp_path / LORA_CONFIG).read_text()) == config
    assert config["alpha"] == 7.0 and config["base_model"] == str(tiny_path)
    assert (tmp_path / LORA_FILE).stat().st_size > 0
    fresh = load_lora_adapter(load_model(str(tiny_path), progress=False), tmp_path)
    assert lora_settings(fresh) == lora_settings(lm)
    np.testing.assert_allclose(logits(fresh), tuned, atol=1e-5)


def test_the_starting_factors_depend_on_the_seed_not_on_pythons_global_random(tiny_path):
    """Keras draws A's seed from ``random``; a library that moved it between two runs made
    an exact-resume comparison fail in CI (the GCS test after the emulator's threads)."""
    import random

    from gemma_panel.models import load_model

    def factors(seed, moved):
        lm = load_model(str(tiny_path), progress=False)
        random.seed(moved)
        layers = enable_lora(lm, rank=2, alpha=4.0, target_layers=["query"], seed=seed)
        return [np.asarray(layer.lora_kernel_a.value) for layer in layers]

    first, moved, other_seed = factors(0, 1), factors(0, 2), factors(1, 1)
    for a, b, c in zip(first, moved, other_seed, strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - c).max() > 1e-3  # the seed does choose them
    assert np.abs(first[0] - first[1]).max() > 1e-3  # each layer its own draw
