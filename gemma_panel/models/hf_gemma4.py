"""Gemma 4 and Gemma 3n Hugging Face folders: what KerasHub's converter needs that they may lack.

KerasHub 0.32's Gemma 4 converter (``keras_hub/src/utils/transformers/convert_gemma4.py``)
reads three things a valid folder need not have:

* ``global_head_dim`` (and ``num_global_key_value_heads``) in the text config. transformers
  5 writes them as ``per_layer_config`` (``{"5": {"head_dim": 512, ...}}``) instead, so a
  folder saved by ``save_pretrained`` would be built with the sliding layers' head size on
  its global layers, and its weights would not fit.
* ``processor_config.json``, read even for a text-only ``gemma4_text`` model.
* the key/value sharing of the global layers: KerasHub builds them with ``attention_k_eq_v``
  (no ``v_proj``) whenever ``num_global_key_value_heads`` is set, transformers only when
  ``attention_k_eq_v`` is true. KerasHub's own ``export_to_transformers`` (and any folder that
  sets the count without the switch) would load with the value projections dropped.
* ``tokenizer.json``, which KerasHub's converter reads; a folder may carry only the
  SentencePiece ``tokenizer.model`` (KerasHub's own export does): we convert it the way
  transformers does (`tokenizer_json`).
* a SentencePiece ``tokenizer.model`` is not read by KerasHub (it builds one from
  ``tokenizer.json``), but our data checks need one; we write the same proto KerasHub builds.

When a folder lacks any of them it is loaded through a *view* in the model cache: a folder of
symbolic links to the user's files beside the completed ``config.json``, an empty processor
config and the tokenizer proto. The user's folder is never written.

Gemma 3n: KerasHub converts only the full multimodal ``gemma3n`` checkpoint (its converter
reads ``vision_config`` and ``audio_config``); a text-only ``gemma3n_text`` folder is refused
up front.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gemma_panel import files
from gemma_panel.models.errors import ModelSourceError

GEMMA4_TYPES = ("gemma4", "gemma4_text")
TASK_CLASSES = {"gemma4": "Gemma4CausalLM", "gemma4_text": "Gemma4CausalLM",
                "gemma3n": "Gemma3nCausalLM"}


def task_class_name(model_type: str | None) -> str:
    """The KerasHub task to load a model type with (``CausalLM`` lets KerasHub choose).

    Gemma 4 needs naming: for a Gemma 4 backbone ``CausalLM.from_preset`` picks the
    speculative-decoding ``Gemma4AssistantCausalLM``, which a plain checkpoint cannot build.
    """
    return TASK_CLASSES.get(model_type or "", "CausalLM")


def check_supported(path: Path, model_type: str | None) -> None:
    """Refuse, with the reason, a Gemma folder KerasHub cannot convert."""
    if model_type == "gemma3n_text":
        raise ModelSourceError(
            f"'{path}' holds a text-only Gemma 3n ('gemma3n_text'); KerasHub converts only the "
            "whole multimodal Gemma 3n checkpoint (model_type 'gemma3n', with its vision and "
            "audio config). Use the original google/gemma-3n-* folder or a KerasHub preset."
        )


def loadable_folder(path: Path) -> Path:
    """``path`` itself, or a cached view of it that KerasHub's Gemma 4 converter can load."""
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") not in GEMMA4_TYPES:
        return path
    patched = completed_config(config)
    missing = {"processor": not (path / "processor_config.json").is_file(),
               "spm": not (path / "tokenizer.model").is_file(),
               "json": not (path / "tokenizer.json").is_file()}
    if patched == config and not any(missing.values()):
        return path
    return _write_view(path, patched, missing)


def completed_config(config: dict) -> dict:
    """The config with ``global_head_dim``/``num_global_key_value_heads`` restored from
    transformers' ``per_layer_config``, where they are missing, and the global key/value
    head count kept only where transformers uses it (``attention_k_eq_v``)."""
    config = json.loads(json.dumps(config))
    text = config.get("text_config", config) if config.get("model_type") == "gemma4" else config
    overrides = list((text.get("per_layer_config") or {}).values())
    for key, source in (("global_head_dim", "head_dim"),
                        ("num_global_key_value_heads", "num_key_value_heads")):
        values = {o[source] for o in overrides if isinstance(o, dict) and source in o}
        if key not in text and len(values) == 1:
            text[key] = values.pop()
    if not text.get("attention_k_eq_v") and text.get("num_global_key_value_heads") is not None:
        text["num_global_key_value_heads"] = None  # transformers ignores it: keep v_proj
    return config


def _write_view(path: Path, config: dict, missing: dict[str, bool]) -> Path:
    from gemma_panel.models.cache import models_dir

    target = models_dir() / f"hf-view-{_fingerprint(path, config)}"
    if (target / "config.json").is_file():
        return target
    try:
        with files.staged_folder(target) as partial:
            for item in sorted(path.iterdir()):
                if item.is_file() and item.name != "config.json":
                    (partial / item.name).symlink_to(item.resolve())
            (partial / "config.json").write_text(json.dumps(config, indent=2))
            if missing["processor"]:
                (partial / "processor_config.json").write_text("{}")
            if missing["json"]:
                (partial / "tokenizer.json").write_text(tokenizer_json(path / "tokenizer.model"))
            elif missing["spm"]:
                (partial / "tokenizer.model").write_bytes(sentencepiece_proto(path))
    except FileExistsError:  # another process made the same view first
        pass
    return target


def sentencepiece_proto(path: Path) -> bytes:
    """The SentencePiece model KerasHub builds from the folder's ``tokenizer.json``."""
    from keras_hub.src.utils.transformers.convert_gemma4 import _build_sentencepiece_proto

    return _build_sentencepiece_proto(json.loads((path / "tokenizer.json").read_text()))


def tokenizer_json(spm_file: Path) -> str:
    """The fast tokenizer transformers makes of a Gemma SentencePiece model, as JSON.

    Only the ``tokenizer.model`` is read (in a scratch folder): its user-defined pieces (the
    turn markers and other control tokens) become added tokens. A ``tokenizer_config.json``
    beside it is not trusted, since KerasHub's exporter may name tokens the vocabulary lacks.
    """
    import tempfile

    from transformers import GemmaTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "tokenizer.model").symlink_to(Path(spm_file).resolve())
        tokenizer = GemmaTokenizer.from_pretrained(scratch, add_bos_token=True,
                                                   add_eos_token=False)
        return tokenizer.backend_tokenizer.to_str()


def _fingerprint(path: Path, config: dict) -> str:
    """Changes when the folder's files or its completed config change."""
    digest = hashlib.sha256(str(path.resolve()).encode())
    digest.update(json.dumps(config, sort_keys=True).encode())
    for item in sorted(path.iterdir()):
        if item.is_file():
            stat = item.stat()
            digest.update(f"{item.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]
