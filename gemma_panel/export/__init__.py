"""Exports of tuned models, each verified by loading it back with its consumer.

    result = export_run("my-run-3f2a1b", "gguf", quantize="q8_0")   # a run's latest checkpoint
    result.path, result.manifest["verification"]["passed"]
    export_model(train_result.model, "hf", "out/hf")                # a model in memory

Formats (``FORMATS``): keras (int8/int4 with ``quantize``), preset, lora, savedmodel, hf, peft,
gguf (f32, f16, bf16, q8_0, q4_0, q5_0; K-quants through llama-quantize), litert (int8,
f32: a .tflite for edge devices). Every export is
written aside and moved into place whole, with a manifest and a README. See docs/export.md.
"""

from gemma_panel.export.gguf import GGUF_TYPES
from gemma_panel.export.manifest import ExportError, check_files, is_finished, read_manifest
from gemma_panel.export.pipeline import FORMATS, ExportResult, export_model, export_run
from gemma_panel.export.source import ExportSource, load_run_model, merged_copy
from gemma_panel.export.verify import VerificationError
from gemma_panel.models.lora import load_lora_adapter

__all__ = [
    "FORMATS",
    "GGUF_TYPES",
    "ExportError",
    "ExportResult",
    "ExportSource",
    "VerificationError",
    "check_files",
    "export_model",
    "export_run",
    "is_finished",
    "load_lora_adapter",
    "load_run_model",
    "merged_copy",
    "read_manifest",
]
