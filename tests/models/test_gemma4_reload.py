"""A Gemma 4 Hugging Face folder written by us, or by KerasHub's own exporter, loads back
through `load_model` into the same model: same logits, same token ids."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.tiny_hf_gemma4 import write_tiny_gemma4

TEXT = "  Hello\n\nworld!  Café 12345 <|turn>user\nthe quick fox<turn|>\n<|turn>model\n"


def _logits(lm, ids):
    x = {"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), bool),
         "position_ids": np.arange(len(ids))[None]}
    return np.asarray(lm(x))


def _ids(lm, text):
    return [int(i) for i in np.asarray(lm.preprocessor.tokenizer(text))]


@pytest.mark.parametrize("variant", ["dense", "k_eq_v"])
def test_our_export_loads_back_with_the_same_logits(tmp_path, variant):
    from gemma_panel.export.hf import write_hf_folder
    from gemma_panel.models import load_model

    write_tiny_gemma4(tmp_path / "hf", variant)
    lm = load_model(str(tmp_path / "hf"))
    write_hf_folder(lm, tmp_path / "out", None)
    assert (tmp_path / "out" / "tokenizer.json").is_file()

    again = load_model(str(tmp_path / "out"))
    assert _ids(again, TEXT) == _ids(lm, TEXT)
    ids = [lm.preprocessor.tokenizer.start_token_id] + _ids(lm, TEXT)
    difference = np.abs(_logits(again, ids) - _logits(lm, ids)).max()
    print(f"{variant}: max |logit difference| after the round trip {difference:.2e}")
    assert difference <= 1e-6


def test_keras_hub_own_export_loads_back(tmp_path):
    """``export_to_transformers`` alone writes no tokenizer.json and a global key/value head
    count that KerasHub's converter would read as "keys are values"."""
    from gemma_panel.models import load_model

    write_tiny_gemma4(tmp_path / "hf")
    lm = load_model(str(tmp_path / "hf"))
    lm.export_to_transformers(str(tmp_path / "out"))
    assert not (tmp_path / "out" / "tokenizer.json").exists()
    files_before = sorted(p.name for p in (tmp_path / "out").iterdir())

    again = load_model(str(tmp_path / "out"))
    assert _ids(again, TEXT) == _ids(lm, TEXT)
    ids = [2] + _ids(lm, TEXT)
    np.testing.assert_allclose(_logits(again, ids), _logits(lm, ids), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == files_before


def test_exported_config_says_which_global_layers_share_keys_and_values(tmp_path):
    import json

    from gemma_panel.export.hf import write_hf_folder
    from gemma_panel.models import load_model

    for variant, shared in (("dense", None), ("k_eq_v", 2)):
        write_tiny_gemma4(tmp_path / variant, variant)
        write_hf_folder(load_model(str(tmp_path / variant)), tmp_path / f"{variant}-out", None)
        config = json.loads((tmp_path / f"{variant}-out" / "config.json").read_text())
        assert config["attention_k_eq_v"] is (shared is not None)
        assert config["num_global_key_value_heads"] == shared
