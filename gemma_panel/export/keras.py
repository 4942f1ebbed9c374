"""Keras exports: the ``.keras`` file, a KerasHub preset folder, and the LoRA weights alone.

* ``keras``: ``model.save("model.keras")``. Keras's own format always stores a LoRA layer's
  kernel merged (``EinsumDense.save_own_variables``); a model saved unmerged comes back with
  LoRA enabled and zero factors, ready to tune further. ``merge=True`` (default) saves the
  merged model without LoRA layers.
* ``preset``: ``save_to_preset``: the folder any ``from_preset`` (and ``gemma-panel``'s own
  loader) reads; its weights are merged by KerasHub.
* ``lora``: ``backbone.save_lora_weights("adapter.lora.h5")`` (KerasHub's format: the A and B
  factors per layer and the rank) plus ``lora.json`` with what that file leaves out and a
  loader needs: alpha, the target layer names and the base model (``models/lora.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gemma_panel.export.manifest import ExportError
from gemma_panel.export.verify import (
    LoraBase,
    Verification,
    carries_lora,
    check_carries_lora,
    compare_logits,
    keras_logits,
)
from gemma_panel.models.lora import (
    LORA_FILE,
    load_lora_adapter,
    lora_settings,
    write_lora_adapter,
)


def save_keras(model, folder: Path) -> Path:
    path = Path(folder) / "model.keras"
    model.save(path)
    return path


def load_keras_logits(path: Path, ids) -> np.ndarray:
    import keras
    import keras_hub  # noqa: F401  (registers KerasHub's classes for deserialisation)

    return keras_logits(keras.saving.load_model(path), ids)


def export_keras(model, folder: Path, check: Verification, ids, reference,
                 base: LoraBase | None = None) -> Path:
    """Write ``model.keras`` and check that ``keras.saving.load_model`` gives the same logits."""
    path = save_keras(model, folder)
    logits = load_keras_logits(path, ids)
    compare_logits(check, "keras_load_model_logits", logits, reference, 1e-4)
    check_carries_lora(check, "keras_carries_lora", folder, logits, reference, base,
                       lambda scratch: load_keras_logits(save_keras(base.model, scratch), ids))
    return path


def load_preset_logits(folder: Path, ids) -> np.ndarray:
    from gemma_panel.models import load_model

    return keras_logits(load_model(str(folder), progress=False), ids)


def export_preset(model, folder: Path, check: Verification, ids, reference,
                  base: LoraBase | None = None) -> Path:
    """Write a KerasHub preset into ``folder`` and load it back with ``from_preset``."""
    from gemma_panel.models import resolve_source

    model.save_to_preset(str(folder))
    check.check("preset_recognised", resolve_source(str(folder)).kind == "keras_preset",
                "gemma_panel's loader sees the folder as a KerasHub preset")
    logits = load_preset_logits(folder, ids)
    compare_logits(check, "from_preset_logits", logits, reference, 1e-4)

    def base_preset(scratch):
        base.model.save_to_preset(str(scratch))
        return load_preset_logits(scratch, ids)

    check_carries_lora(check, "preset_carries_lora", folder, logits, reference, base,
                       base_preset)
    return Path(folder)


def export_lora(lm, folder: Path, check: Verification, ids, reference, base_source: str | None,
                load_base=None, base: LoraBase | None = None) -> Path:
    """Write the LoRA factors alone and check base + adapter reproduces the tuned logits.

    Args:
        lm: the tuned model with LoRA enabled (unmerged).
        base_source: the base model's source (a registry name, GGUF, folder), for lora.json.
        load_base: callable returning a fresh base model for the check (default:
            ``load_model(base_source)``).
        base: the base model's logits, for "the adapter carries the LoRA" (the consumer's
            base is the freshly loaded base model before the adapter goes on).
    """
    if lora_settings(lm) is None:
        raise ExportError("This model has no LoRA (the run fine-tuned every weight), so there "
                          "are no LoRA weights to export; export 'keras', 'preset' or 'hf'.")
    folder = Path(folder)
    write_lora_adapter(lm, folder, base_source)
    if load_base is None:
        if base_source is None:
            raise ExportError("The base model of this LoRA is unknown, so the adapter cannot "
                              "be checked; export from a run (it records its model.source).")

        def load_base():
            from gemma_panel.models import load_model

            return load_model(base_source, progress=False)

    fresh = load_base()
    base_logits = keras_logits(fresh, ids)  # the consumer's base: loaded, no adapter yet
    logits = keras_logits(load_lora_adapter(fresh, folder), ids)
    compare_logits(check, "base_plus_lora_logits", logits, reference, 1e-4)
    if base is not None:
        carries_lora(check, "lora_carries_lora", logits, reference, base.logits, base_logits)
    return folder / LORA_FILE

