"""Gemma 4 GGUF: written as llama.cpp's converter writes it, and read back by `load_model`
into the same model (logits and token ids), for each tiny Gemma 4 shape."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.tiny_hf_gemma4 import VARIANTS, write_tiny_gemma4

TEXT = "  Hello\n\nworld! <|turn>user\nthe quick fox<turn|>\n<|channel>thought<channel|>"


def _ids(lm, text=TEXT):
    return [int(i) for i in np.asarray(lm.preprocessor.tokenizer(text))]


def _logits(lm, ids):
    x = {"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), bool),
         "position_ids": np.arange(len(ids))[None]}
    return np.asarray(lm(x))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gguf_loads_back_as_the_same_model(tmp_path, variant):
    from gemma_panel.export.gguf import write_gguf
    from gemma_panel.models import load_model

    write_tiny_gemma4(tmp_path / "hf", variant)
    lm = load_model(str(tmp_path / "hf"))
    write_gguf(lm, tmp_path / "model.gguf", "f32", str(tmp_path / "hf"))

    again = load_model(str(tmp_path / "model.gguf"))
    assert type(again).__name__ == "Gemma4CausalLM"
    assert _ids(again) == _ids(lm)
    ids = [2] + _ids(lm)
    difference = np.abs(_logits(again, ids) - _logits(lm, ids)).max()
    print(f"{variant}: max |logit difference| through the GGUF {difference:.2e}")
    assert difference <= 1e-6


def test_file_follows_llama_cpp_gemma4_conventions(tmp_path):
    import gguf

    from gemma_panel.export.gguf import write_gguf
    from gemma_panel.export.gguf_check_gemma4 import LLAMA_CPP_KEYS, gemma4_tensor_names
    from gemma_panel.models import load_model
    from gemma_panel.models.gguf_import import field_value

    write_tiny_gemma4(tmp_path / "hf", "moe")
    lm = load_model(str(tmp_path / "hf"))
    write_gguf(lm, tmp_path / "model.gguf", "f32", str(tmp_path / "hf"))
    reader = gguf.GGUFReader(str(tmp_path / "model.gguf"))

    assert field_value(reader, "general.architecture") == "gemma4"
    assert all(key in reader.fields for key in LLAMA_CPP_KEYS)
    names = [t.name for t in reader.tensors]
    assert set(names) <= gemma4_tensor_names(2)
    assert names[0] == "rope_freqs.weight"
    assert {"blk.0.ffn_gate_inp.scale", "blk.0.ffn_down_exps.scale",
            "blk.0.ffn_gate_up_exps.weight", "blk.0.layer_output_scale.weight"} <= set(names)
    # proportional RoPE on the 16-wide global heads (factor 0.25): 2 rotated pairs of 8
    rope = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
    np.testing.assert_array_equal(np.asarray(rope.data), np.float32([1, 1] + [1e30] * 6))
    assert list(field_value(reader, "gemma4.attention.sliding_window_pattern")) == [True, False]
    assert field_value(reader, "gemma4.attention.key_length") == 16
    assert field_value(reader, "gemma4.attention.key_length_swa") == 8
    # norms as they are (Gemma 4 computes x * w: no +1 as in Gemma 1-3)
    norm = next(t for t in reader.tensors if t.name == "output_norm.weight")
    np.testing.assert_array_equal(np.asarray(norm.data),
                                  np.asarray(lm.backbone.get_layer("final_normalization")
                                             .scale))
    tokens = list(field_value(reader, "tokenizer.ggml.tokens"))
    kinds = list(field_value(reader, "tokenizer.ggml.token_type"))
    assert field_value(reader, "tokenizer.ggml.model") == "gemma4"
    assert kinds[tokens.index("<|turn>")] == gguf.TokenType.CONTROL
    assert kinds[tokens.index("<|channel>")] == gguf.TokenType.USER_DEFINED
    assert len(field_value(reader, "tokenizer.ggml.merges")) > 0


def test_our_names_are_gguf_tensor_map_names(tmp_path):
    """Our table both ways, against gguf's own ``TensorNameMap`` for Gemma 4."""
    import gguf

    from gemma_panel.export.gguf import hf_weights
    from gemma_panel.models import gguf_gemma4, load_model

    for variant in ("per_layer_embeddings", "moe"):
        write_tiny_gemma4(tmp_path / variant, variant)
        _, weights = hf_weights(load_model(str(tmp_path / variant)))
        tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA4, 2)
        for name in weights:
            ours = gguf_gemma4.gguf_name(name)
            assert gguf_gemma4.hf_name(ours) == name
            if name.endswith(("router.scale", "per_expert_scale")):
                continue  # llama.cpp names these two itself (.scale of the router / experts)
            bare = name if name.endswith(".weight") else name + ".weight"
            assert tmap.get_name(bare, try_suffixes=(".weight",)) == ours, name


def test_a_gemma4_gguf_without_its_bpe_tokenizer_is_refused(tmp_path):
    import gguf

    from gemma_panel.models.errors import ModelSourceError
    from gemma_panel.models.gguf_gemma4 import write_tokenizer

    writer = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "gemma4")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<pad>", "<eos>", "<bos>", "<unk>"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelSourceError, match="no 'gemma4' tokenizer.*convert_hf_to_gguf"):
        write_tokenizer(gguf.GGUFReader(str(tmp_path / "x.gguf")), tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()


def test_gguf_export_of_a_gemma4_with_a_vision_tower_is_refused():
    from types import SimpleNamespace

    from gemma_panel.export.gguf_gemma4 import check_text_only
    from gemma_panel.export.manifest import ExportError

    check_text_only(SimpleNamespace(vision_encoder=None, audio_encoder=None))
    with pytest.raises(ExportError, match="text model only.*vision tower.*export 'hf'"):
        check_text_only(SimpleNamespace(vision_encoder=object(), audio_encoder=None))
