"""The registry knows Gemma 4 and Gemma 3n, with facts that agree with KerasHub's presets."""

from __future__ import annotations

import pytest

from gemma_panel.models.listing import models_table
from gemma_panel.models.loader import resolve_source
from gemma_panel.models.registry import MODELS, get_model_spec

NEW = ["gemma4-e2b", "gemma4-e4b", "gemma4-26b-a4b", "gemma4-31b", "gemma3n-e2b", "gemma3n-e4b"]


@pytest.mark.parametrize("name", NEW)
def test_presets_and_sizes_are_keras_hubs(name):
    import keras_hub

    spec = MODELS[name]
    backbone = {"gemma4": keras_hub.models.Gemma4Backbone,
                "gemma3n": keras_hub.models.Gemma3nBackbone}[spec.family]
    assert len(spec.keras_hub_presets) == 2
    for preset in spec.keras_hub_presets:
        assert preset in backbone.presets
        assert backbone.presets[preset]["metadata"]["params"] == spec.params


def test_instruction_tuned_names_pick_the_instruct_preset():
    assert resolve_source("gemma4-e2b").location == "gemma4_2b"
    assert resolve_source("gemma4-e2b-it").location == "gemma4_instruct_2b"
    assert resolve_source("gemma3n-e4b-it").location == "gemma3n_e4b_it"
    assert resolve_source("gemma3-1b-it").location == "gemma3_instruct_1b"
    assert get_model_spec("gemma4-31b-it") is MODELS["gemma4-31b"]
    assert resolve_source("gemma4_instruct_26b_a4b").kind == "preset_name"


def test_mixture_of_experts_and_modalities():
    moe = MODELS["gemma4-26b-a4b"]
    assert moe.active_params == 4_000_000_000 < moe.params
    assert (moe.num_experts, moe.experts_per_token) == (128, 8)
    assert "audio" in MODELS["gemma4-e2b"].modalities and "audio" not in moe.modalities
    assert MODELS["gemma3-1b"].modalities == ("text",) and MODELS["gemma3-1b"].num_experts == 0
    assert MODELS["gemma4-e4b"].licence.startswith("Apache")
    assert MODELS["gemma3n-e2b"].licence.startswith("Gemma Terms")


def test_listing_shows_families_inputs_download_and_licences():
    table = models_table()
    for name in NEW:
        assert name in table
    row = next(line for line in table.splitlines() if line.startswith("gemma4-26b-a4b"))
    assert "26B" in row and "4B" in row and "text, image, video" in row and "52.0 GB" in row
    assert "bundled" in next(line for line in table.splitlines() if line.startswith("gemma3-270m"))
    assert "Licence: Apache License 2.0 (gemma4)." in table


def test_listing_and_picker_say_which_models_need_a_download(tmp_path, monkeypatch):
    from gemma_panel.models.listing import download_note
    from gemma_panel.models.registry import MODELS

    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    spec = MODELS["gemma4-e2b"]
    assert download_note(spec) == f"{spec.download_bytes() / 1e9:.1f} GB"
    preset = tmp_path / "models" / "keras" / "gemma4" / "keras" / "gemma4_instruct_2b" / "1"
    preset.mkdir(parents=True)
    assert download_note(spec) != "cached"  # an empty folder is not a download
    (preset / "config.json").write_text("{}")
    assert download_note(spec) == "cached"
    row = next(line for line in models_table().splitlines() if line.startswith("gemma4-e2b "))
    assert "cached" in row
    assert "GB" in next(line for line in models_table().splitlines()
                        if line.startswith("gemma4-e4b "))
    from gemma_panel.ui.config_model import ConfigModel

    cfg = ConfigModel()
    cfg.set("model.source", "gemma4-e4b")
    assert cfg.model_info()["download"].endswith("GB of bfloat16 weights on first use")
    cfg.set("model.source", "gemma4-e2b")
    assert cfg.model_info()["download"] == "nothing (downloaded before)"
