"""A model's size without its weights: from a Hugging Face config.json (what a GGUF's import
writes), counted as Keras counts the loaded backbone."""

from __future__ import annotations

from gemma_panel.models.registry import MODELS
from gemma_panel.planning.memory import ModelSize, size_of_hf_config, size_without_weights


def _config(spec) -> dict:
    return {"hidden_size": spec.hidden_dim, "num_hidden_layers": spec.num_layers,
            "intermediate_size": spec.intermediate_dim,
            "num_attention_heads": spec.num_query_heads,
            "num_key_value_heads": spec.num_key_value_heads, "head_dim": spec.head_dim,
            "vocab_size": spec.vocab_size}


def test_the_270m_counted_from_its_config_is_the_registrys_exact_count():
    spec = MODELS["gemma3-270m"]
    size = size_of_hf_config(_config(spec))
    assert size.params == spec.params
    assert size.shape == ModelSize.of_spec(spec).shape and size.layers == spec.num_layers


def test_a_prepared_gguf_has_the_size_keras_counts_without_loading_it(tmp_path):
    from gemma_panel.models import load_model
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    gguf = write_tiny_gemma_gguf(tmp_path / "tiny.gguf", "gemma3", hidden=64, heads=2,
                                 kv_heads=1, head_dim=256, ffn=128, layers=2)
    size = size_without_weights(str(gguf))
    backbone = load_model(str(gguf), progress=False).backbone
    assert size.params == backbone.count_params()
    assert size.shape.vocab == backbone.vocabulary_size and size.layers == 2
