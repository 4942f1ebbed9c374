"""Gemma models from any source: the bundled 270M, GGUF files, Hugging Face folders, presets."""

from gemma_panel.models.errors import ModelSourceError
from gemma_panel.models.loader import load_model, prepare_model, resolve_source
from gemma_panel.models.registry import DEFAULT_MODEL, MODELS, ModelSpec, get_model_spec

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelSourceError",
    "ModelSpec",
    "get_model_spec",
    "load_model",
    "prepare_model",
    "resolve_source",
]
