"""GGUF import on tiny random Gemmas, checked against an independent reader (transformers)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gemma_panel.models import ModelSourceError, load_model
from gemma_panel.models.cache import cached_import_dir, file_sha256, import_gguf, models_dir
from tests.models.tiny_gguf import write_tiny_gemma_gguf

# transformers' GGUF reader assumes query_pre_attn_scalar = 256, as in every real Gemma 2/3
# below 27B; a tiny model has to use head_dim 256 for the two to mean the same model.
TINY = {"hidden": 64, "heads": 2, "kv_heads": 1, "head_dim": 256, "ffn": 128, "layers": 6}


def keras_logits(lm, ids):
    x = np.array([ids], dtype="int32")
    hidden = lm.backbone({"token_ids": x, "padding_mask": np.ones_like(x)})
    return np.asarray(lm.backbone.token_embedding(hidden, reverse=True))


def torch_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits.numpy()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_gguf")


@pytest.mark.parametrize("arch", ["gemma3", "gemma2"])
def test_logits_match_transformers_reading_the_same_gguf(tiny_dir, arch):
    import torch
    from transformers import AutoModelForCausalLM

    path = write_tiny_gemma_gguf(tiny_dir / f"{arch}.gguf", arch, sliding_window=5, **TINY)
    lm = load_model(str(path), progress=False)
    reference = AutoModelForCausalLM.from_pretrained(
        str(tiny_dir), gguf_file=path.name, dtype=torch.float32
    ).eval()
    rng = np.random.default_rng(1)
    ids = [2] + [int(i) for i in rng.integers(4, lm.backbone.vocabulary_size, 24)]
    ours, theirs = keras_logits(lm, ids), torch_logits(reference, ids)
    # 24 tokens with a window of 5: the sliding and the global layers both matter.
    assert np.abs(ours - theirs).max() < 1e-4, np.abs(ours - theirs).max()
    assert np.abs(theirs).max() > 1.0  # not a degenerate all-zero model


def test_gemma1_weights_round_trip_and_match_transformers(tiny_dir):
    """transformers cannot read a Gemma 1 GGUF, so compare tensors and the HF folder instead."""
    import gguf
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM

    path = write_tiny_gemma_gguf(tiny_dir / "gemma.gguf", "gemma", quantize=False, **TINY)
    folder = import_gguf(path, progress=False)
    weights = load_file(folder / "model.safetensors")
    source = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(path).tensors}
    assert np.array_equal(weights["model.layers.3.mlp.down_proj.weight"],
                          source["blk.3.ffn_down.weight"])
    # Gemma 1's "ffn_norm" is HF's post_attention_layernorm, stored with llama.cpp's +1.
    assert np.allclose(weights["model.layers.0.post_attention_layernorm.weight"] + 1.0,
                       source["blk.0.ffn_norm.weight"])
    lm = load_model(str(path), progress=False)
    reference = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ids = [2, 10, 20, 30, 40, 50, 60, 70]
    assert np.abs(keras_logits(lm, ids) - torch_logits(reference, ids)).max() < 1e-4


def test_import_once_keyed_by_content(tiny_dir, monkeypatch):
    path = write_tiny_gemma_gguf(tiny_dir / "once.gguf", "gemma3", seed=3, **TINY)
    folder = import_gguf(path, progress=False)
    record = json.loads((folder / "import.json").read_text())
    assert record["sha256"] == file_sha256(path)
    assert folder == cached_import_dir(record["sha256"])

    from gemma_panel.models import gguf_import

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached GGUF was imported again")

    monkeypatch.setattr(gguf_import, "convert_gguf_to_hf", must_not_run)
    copy = tiny_dir / "same-bytes-other-name.gguf"
    copy.write_bytes(path.read_bytes())
    assert import_gguf(copy, progress=False) == folder


def test_interrupted_import_leaves_nothing_trusted(tiny_dir, monkeypatch):
    path = write_tiny_gemma_gguf(tiny_dir / "interrupted.gguf", "gemma3", seed=4, **TINY)
    before = sorted(p.name for p in models_dir().iterdir())
    from gemma_panel.models import gguf_import

    original = gguf_import.convert_gguf_to_hf

    def killed_half_way(reader, out_dir, progress=None):
        (out_dir / "model.safetensors").write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_import, "convert_gguf_to_hf", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        import_gguf(path, progress=False)
    assert sorted(p.name for p in models_dir().iterdir()) == before
    monkeypatch.setattr(gguf_import, "convert_gguf_to_hf", original)
    assert (import_gguf(path, progress=False) / "import.json").is_file()


def test_sigkilled_import_is_cleaned_up_and_redone(tiny_dir):
    """A real SIGKILL mid-import: the half-written folder is never used and is removed later."""
    path = write_tiny_gemma_gguf(tiny_dir / "killed.gguf", "gemma3", seed=5, **TINY)
    sha = file_sha256(path)
    script = (
        "import os, signal, sys\n"
        "import gemma_panel.models.gguf_import as g\n"
        "def convert(reader, out_dir, progress=None):\n"
        "    (out_dir / 'model.safetensors').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "g.convert_gguf_to_hf = convert\n"
        "from gemma_panel.models.cache import import_gguf\n"
        f"import_gguf({str(path)!r}, progress=False)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    assert result.returncode == -9
    leftovers = list(models_dir().glob(".partial-gguf-" + sha[:16] + "*"))
    assert leftovers and not cached_import_dir(sha).exists()
    folder = import_gguf(path, progress=False)
    assert (folder / "import.json").is_file()
    assert not any(p.exists() for p in leftovers)


def _cache_listing():
    """The cache's files, and the hashes it remembers (a refused file's must not be)."""
    hashes = models_dir() / "hashes.json"
    return (sorted(str(p.relative_to(models_dir())) for p in models_dir().rglob("*")),
            hashes.read_text() if hashes.is_file() else None)


def _llama_gguf(path):
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    "make_source, words",
    [
        (lambda d: str(d / "missing.gguf"), "does not exist"),
        (lambda d: (d / "notes.gguf").write_text("hello") and str(d / "notes.gguf"), "not a GGUF"),
        (lambda d: str(_llama_gguf(d / "llama.gguf")), "'llama' model"),
        (lambda d: (d / "empty").mkdir() or str(d / "empty"), "no config.json"),
        (
            lambda d: (d / "hf").mkdir()
            or (d / "hf" / "config.json").write_text('{"model_type": "gemma3_text"}')
            and str(d / "hf"),
            "no .safetensors",
        ),
        (
            lambda d: (d / "bert").mkdir()
            or (d / "bert" / "config.json").write_text('{"model_type": "bert"}')
            and str(d / "bert"),
            "'bert' model",
        ),
        (lambda d: "gemma_made_up_9b", "Unknown model"),
    ],
    ids=["missing", "not-gguf", "llama", "empty-dir", "hf-no-weights", "not-gemma", "unknown"],
)
def test_bad_sources_say_what_to_do_and_leave_cache_alone(tmp_path, make_source, words):
    source = make_source(tmp_path)
    before = _cache_listing()
    with pytest.raises(ModelSourceError) as info:
        load_model(source, progress=False)
    assert words in str(info.value)
    assert str(info.value).count(".") >= 1 and "\n" not in str(info.value)
    assert _cache_listing() == before


def test_truncated_gguf_is_named_truncated(tiny_dir, tmp_path):
    path = write_tiny_gemma_gguf(tiny_dir / "whole.gguf", "gemma3", seed=6, **TINY)
    data = path.read_bytes()
    before = _cache_listing()
    for cut, words in [(len(data) - 100, "truncated"), (200, "not a readable GGUF")]:
        broken = tmp_path / f"cut{cut}.gguf"
        broken.write_bytes(data[:cut])
        with pytest.raises(ModelSourceError, match=words):
            load_model(str(broken), progress=False)
    assert _cache_listing() == before
