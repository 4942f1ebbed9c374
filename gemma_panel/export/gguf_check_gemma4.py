"""Verifying a Gemma 4 GGUF export.

The Gemma 3 checks compare with the bundled llama.cpp-made Gemma 3 file and load the export
in transformers. Neither fits Gemma 4: no llama.cpp-made Gemma 4 file is here, and
transformers 5.24's GGUF reader maps ``gemma4.attention.key_length`` to the global head size
and keeps the sliding layers' at its default (256), so it builds only the real models'
shapes. Instead:

1. layout: every metadata key llama.cpp's ``Gemma4Model`` writes is there, and every tensor
   name is one ``gguf`` defines for ``MODEL_ARCH.GEMMA4``;
2. every dequantized tensor is within its type's bound of the weights written (norms as
   they are: Gemma 4 has no ``+1``);
3. the file read back by `gemma_panel.models.gguf_import` into KerasHub (what
   ``load_model(file.gguf)`` does) gives the tuned model's logits (F32: within 1e-3;
   quantized: the drift is reported), and, for a LoRA run, sits measurably closer to the
   tuned model than the base written the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from gemma_panel.export.gguf_check import dequantized_errors
from gemma_panel.export.verify import Verification, check_carries_lora, compare_logits

# What llama.cpp's converter writes for every Gemma 4 text model (experts and soft-capping
# only where the model has them).
LLAMA_CPP_KEYS = tuple(f"gemma4.{k}" for k in (
    "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
    "attention.sliding_window", "attention.sliding_window_pattern",
    "attention.shared_kv_layers", "embedding_length_per_layer_input",
    "attention.key_length", "attention.value_length", "attention.key_length_swa",
    "attention.value_length_swa", "rope.dimension_count", "rope.dimension_count_swa",
    "rope.freq_base", "rope.freq_base_swa")) + tuple(f"tokenizer.ggml.{k}" for k in (
        "model", "tokens", "scores", "token_type", "merges", "bos_token_id", "eos_token_id",
        "add_bos_token", "add_space_prefix")) + (
    "general.architecture", "general.file_type", "general.quantization_version")


def gemma4_tensor_names(blocks: int) -> set[str]:
    """Every tensor name ``gguf`` defines for Gemma 4, with llama.cpp's suffixes."""
    import gguf

    names = set()
    for tensor in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.GEMMA4]:
        pattern = gguf.TENSOR_NAMES[tensor]
        for bid in range(blocks) if "{bid}" in pattern else [None]:
            base = pattern.format(bid=bid)
            names |= {f"{base}.weight", f"{base}.scale"}
    return names


def check_layout(check: Verification, reader) -> None:
    from gemma_panel.models.gguf_import import field_value

    missing = [k for k in LLAMA_CPP_KEYS if k not in reader.fields]
    check.check("gguf_metadata_keys", not missing,
                f"{len(LLAMA_CPP_KEYS)} keys llama.cpp's gemma4 converter writes; missing "
                f"{missing or 'none'}", missing=missing)
    known = gemma4_tensor_names(int(field_value(reader, "gemma4.block_count")))
    unknown = [t.name for t in reader.tensors if t.name not in known]
    check.check("gguf_tensor_names", not unknown,
                f"{len(reader.tensors)} tensors, all named as gguf's GEMMA4 architecture names "
                f"them" if not unknown else f"names gguf does not define: {unknown[:5]}",
                unknown=unknown)


def imported_logits(reader, scratch: Path, ids) -> np.ndarray:
    """The GGUF through our importer into KerasHub (``load_model``'s path), on ``ids``."""
    import keras_hub

    from gemma_panel.export.verify import keras_logits
    from gemma_panel.models.gguf_import import convert_gguf_to_hf

    try:
        convert_gguf_to_hf(reader, scratch)
        return keras_logits(keras_hub.models.Gemma4CausalLM.from_preset(str(scratch)), ids)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def verify(check: Verification, reader, folder: Path, sources: dict, file_type: str, ids,
           reference, base, model_source: str | None) -> None:
    from gemma_panel.export import gguf
    from gemma_panel.models.gguf_reader import read_gguf

    check_layout(check, reader)
    dequantized_errors(check, reader, sources, norm_shift=0.0)
    logits = imported_logits(reader, Path(folder) / ".gguf-import", ids)
    if file_type == "f32":
        compare_logits(check, "gemma_panel_gguf_logits", logits, reference, 1e-3)
    else:
        diff = float(np.abs(logits - reference).max())
        check.note("quantization_logit_drift", f"{file_type}: max |logit difference| from the "
                   f"tuned model {diff:.3g} (read back by gemma_panel)", max_abs_diff=diff)

    def base_logits(scratch):
        gguf.write_gguf_file(base.model, scratch / gguf.GGUF_FILE, file_type, model_source)
        base_reader = read_gguf(scratch / gguf.GGUF_FILE)
        return imported_logits(base_reader, scratch / ".gguf-import", ids)

    check_carries_lora(check, "gguf_carries_lora", folder, logits, reference, base,
                       base_logits)
    check.note("transformers_gguf", "not run: transformers 5.24 reads a gemma4 GGUF only at "
               "the released models' head sizes; llama.cpp's own tools load it (not on this "
               "machine's PATH to test)")
