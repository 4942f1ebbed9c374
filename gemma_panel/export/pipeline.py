"""``export_run`` / ``export_model``: write one format, verify it, describe it, move it in.

Read it top to bottom: check the request before any work, compute the tuned model's
reference logits (and the base model's, for LoRA runs), write the format into a staging
folder, load it back with its consumer, write the README and the manifest, and rename the
folder into place. A failed check raises ``VerificationError`` and keeps nothing.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.export.manifest import (
    ExportError,
    check_replaceable,
    staged_folder,
    write_manifest,
)
from gemma_panel.export.source import (
    ExportSource,
    backbone_family,
    load_run_model,
    merged_copy,
    pick_checkpoint,
    resolve_run_dir,
)
from gemma_panel.export.verify import (
    LoraBase,
    Verification,
    keras_logits,
    perplexity,
    probe_ids,
)
from gemma_panel.models.lora import lora_switched_off
from gemma_panel.training.checkpoint import checkpoint_step

FORMATS = {
    "keras": "the Keras model file model.keras (--quantize int8: Keras quantization)",
    "preset": "a KerasHub preset folder (keras_hub ... from_preset, gemma-panel --model)",
    "lora": "the LoRA weights alone: KerasHub's adapter.lora.h5 plus lora.json",
    "savedmodel": "a TensorFlow SavedModel serving logits (tf.saved_model.load, TF Serving)",
    "hf": "Hugging Face safetensors, config and tokenizer (transformers, PyTorch)",
    "peft": "the LoRA adapter alone in PEFT's format (adapter_config.json + safetensors)",
    "gguf": "GGUF for llama.cpp and Ollama, with a Modelfile (--quantize: file type)",
    "litert": "LiteRT (TFLite) model.tflite for phones and edge devices (--quantize int8|f32)",
}
DEFAULT_GGUF_TYPE = "f16"
_NEEDS_MERGE = ("savedmodel", "hf", "gguf", "litert")
_ADAPTER_ONLY = ("lora", "peft")
# Formats whose file holds the text model alone (llama.cpp keeps a vision tower in a separate
# projector file; the SavedModel and LiteRT signatures take token ids only).
_TEXT_ONLY = ("savedmodel", "gguf", "litert")


@dataclass
class ExportResult:
    """A finished, verified export."""

    path: Path
    manifest: dict

    @property
    def files(self) -> list[dict]:
        return self.manifest["files"]


def check_request(fmt: str, quantize: str | None, merge: bool) -> str | None:
    """Validate the format options before loading anything; return the normalised type."""
    from gemma_panel.export.gguf import GGUF_TYPES, LLAMA_QUANTIZE_TYPES

    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    if quantize is not None:
        quantize = quantize.lower()
    if fmt == "gguf":
        quantize = quantize or DEFAULT_GGUF_TYPE
        if quantize not in GGUF_TYPES:
            raise ExportError(f"GGUF type '{quantize}' is not supported; choose one of "
                              f"{', '.join(GGUF_TYPES)}.")
        if quantize in LLAMA_QUANTIZE_TYPES and shutil.which("llama-quantize") is None:
            raise ExportError(
                f"GGUF type '{quantize}' needs llama.cpp's llama-quantize on PATH (install "
                "llama.cpp and retry); without it choose one of "
                f"{', '.join(t for t in GGUF_TYPES if t not in LLAMA_QUANTIZE_TYPES)}.")
    elif fmt == "keras":
        if quantize == "int4":  # refused here, not after minutes of loading and exporting
            raise ExportError("Keras int4 exports are refused: Keras 3.15 reloads a saved int4 "
                              "model up to 0.74 logits away from the one it saved, so it cannot "
                              "be verified; use --quantize int8, or --format gguf --quantize "
                              "q4_0 for 4-bit weights.")
        if quantize not in (None, "int8"):
            raise ExportError(f"Keras quantization '{quantize}' is not supported; choose int8 "
                              "(GGUF types such as q4_0 go with --format gguf).")
    elif fmt == "litert":
        from gemma_panel.export.litert import check_litert_request

        quantize = check_litert_request(quantize)
    elif quantize is not None:
        raise ExportError(f"--quantize applies to 'keras' (int8), 'gguf' and 'litert' "
                          f"exports, not '{fmt}'.")
    if not merge and fmt in _NEEDS_MERGE:
        raise ExportError(f"'{fmt}' exports need the LoRA merged into the weights (their "
                          "consumers have no LoRA layers); drop --no-merge, or export the "
                          "adapter alone with --format lora or --format peft.")
    return quantize


# What a model family cannot be exported to, and why (checked before anything is loaded).
# Empty today: Gemma 4 GGUF is written (text model; a vision or audio tower is refused when
# the file is written, `gguf_gemma4.check_text_only`).
REFUSED_FOR_FAMILY: dict[tuple[str, str], str] = {}


def check_family(fmt: str, family: str | None) -> None:
    """Refuse, with the reason, a format this model family cannot be exported to."""
    reason = REFUSED_FOR_FAMILY.get((family or "", fmt))
    if reason:
        raise ExportError(reason)


def check_text_only(fmt: str, lm) -> None:
    """Refuse, before any export work, a text-only format for a model with a vision tower."""
    if fmt in _TEXT_ONLY and getattr(lm.backbone, "vision_encoder", None) is not None:
        raise ExportError(f"'{fmt}' exports hold the text model alone, and this model has a "
                          "vision tower (an image run's model would lose its sight); export "
                          "'hf' (transformers loads it with the tower), 'preset', 'keras', "
                          "'lora' or 'peft'.")


def default_folder_name(fmt: str, quantize: str | None, step: int | None) -> str:
    parts = [fmt] + ([quantize] if quantize else []) + ([f"step{step:06d}"] if step is not None
                                                        else [])
    return "-".join(parts)


def export_run(run: str | os.PathLike, fmt: str, *, quantize: str | None = None,
               merge: bool = True, out: str | os.PathLike | None = None,
               step: int | None = None, overwrite: bool = False, store=None) -> ExportResult:
    """Export a run's tuned model (its latest checkpoint, or ``step``) to ``fmt``.

    Args:
        run: a run id, a unique id prefix, or a run folder.
        fmt: one of ``FORMATS``.
        quantize: GGUF file type (f32, f16, bf16, q8_0, q4_0, q5_0, K-quants) or Keras
            int8/int4.
        merge: fold LoRA into the weights (required by savedmodel, hf and gguf).
        out: the export folder (default ``<run>/exports/<fmt>[-<type>]-step<N>``).
        step: the checkpoint step (default: the latest).
        overwrite: replace an existing export folder once the new one is complete (only
            a finished export: any other existing ``out`` is an ``ExportError``).

    Example:
        >>> export_run("quickstart-3f2a1b", "gguf", quantize="q8_0").path
    """
    quantize = check_request(fmt, quantize, merge)
    run_id, run_dir = resolve_run_dir(run, store)
    checkpoint = pick_checkpoint(run_dir, step)
    check_family(fmt, _run_family(run_dir))
    step = checkpoint_step(checkpoint)
    if out is None:
        out = run_dir / "exports" / default_folder_name(fmt, quantize, step)
    check_replaceable(Path(out), overwrite)  # say so before minutes of loading
    source = load_run_model(run_dir, step=step)
    source.run_id = run_id
    return export_model(source, fmt, out, quantize=quantize, merge=merge, overwrite=overwrite)


def export_model(source, fmt: str, out: str | os.PathLike, *, quantize: str | None = None,
                 merge: bool = True, overwrite: bool = False) -> ExportResult:
    """Export a model (an ``ExportSource``, or a KerasHub causal LM) to ``fmt`` in ``out``."""
    quantize = check_request(fmt, quantize, merge)
    if not isinstance(source, ExportSource):
        source = ExportSource(lm=source)
    check_family(fmt, backbone_family(source.lm))
    check_text_only(fmt, source.lm)
    if fmt in _ADAPTER_ONLY and not source.has_lora:
        raise ExportError(f"'{fmt}' exports the LoRA adapter, but this model has none (the "
                          "run fine-tuned every weight); export 'hf', 'gguf' or 'keras'.")
    started = time.perf_counter()
    lm = source.lm
    ids = probe_ids(lm)
    reference = keras_logits(lm, ids)
    base = _lora_base(source, ids, with_model=fmt not in _ADAPTER_ONLY)
    check = Verification()
    record = {"format": fmt, "quantize": quantize,
              "merged": bool(merge and source.has_lora) or not source.has_lora,
              "source": source.describe(), "versions": _versions()}
    with staged_folder(Path(out), overwrite=overwrite) as folder:
        extra = _write_and_verify(source, fmt, quantize, merge, folder, check, ids, reference,
                                  base)
        record.update(extra)
        check.require(fmt)
        from gemma_panel.export.readme import readme_text

        record["verification"] = check.to_dict()
        record["timings"] = {"export_and_verify_s": round(time.perf_counter() - started, 2)}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        record["process_peak_rss_mb"] = round(peak / 1024)
        (folder / "README.md").write_text(readme_text(record))
        manifest = write_manifest(folder, record)
    return ExportResult(Path(out), manifest)


def _run_family(run_dir: Path) -> str | None:
    """The model family of a run, from its recipe's model source (nothing is loaded)."""
    from gemma_panel.config import load_recipe
    from gemma_panel.models.registry import source_family

    return source_family(load_recipe(run_dir / "recipe.yaml").model.source)


def _lora_base(source: ExportSource, ids, with_model: bool) -> LoraBase | None:
    """For a LoRA run, the base model (every LoRA ``B`` zero): its Keras logits, and (but for
    adapter formats, whose consumer loads the base itself) a copy without LoRA layers that
    the exporter writes and loads the same way as the export, so "the LoRA is carried" is
    judged against the base in the same consumer."""
    if not source.has_lora:
        return None
    lm = source.lm
    with lora_switched_off(lm):
        logits = keras_logits(lm, ids)
        model = merged_copy(lm) if with_model else None  # zero factors: the base kernels
    return LoraBase(logits=logits, model=model)


def _write_and_verify(source: ExportSource, fmt, quantize, merge, folder: Path,
                      check: Verification, ids, reference, base) -> dict:
    """Write ``fmt`` into ``folder`` and run its checks; return extra manifest fields."""
    lm = source.lm
    model_source = source.recipe.model.source if source.recipe is not None else None
    if fmt == "keras" and quantize:
        from gemma_panel.export.quantize import export_quantized_keras

        ref_ppl = perplexity(lambda x, m: keras_logits(lm, x, m), source.validation)
        export_quantized_keras(source.merged(), folder, quantize, check, ids, reference,
                               source.validation, ref_ppl, base)
        return {}
    if fmt == "keras":
        from gemma_panel.export.keras import export_keras

        export_keras(source.merged() if merge else lm, folder, check, ids, reference, base)
        return {}
    if fmt == "preset":
        from gemma_panel.export.keras import export_preset

        export_preset(source.merged(), folder, check, ids, reference, base)
        return {"merged": True}  # a preset holds merged kernels (KerasHub merges them too)
    if fmt == "lora":
        from gemma_panel.export.keras import export_lora

        export_lora(lm, folder, check, ids, reference, model_source, base=base)
        return {"merged": False}
    if fmt == "savedmodel":
        from gemma_panel.export.savedmodel import export_savedmodel

        export_savedmodel(source.merged(), folder, check, ids, reference, base)
        return {}
    if fmt == "hf":
        from gemma_panel.export.gguf_metadata import chat_template_of
        from gemma_panel.export.hf import export_hf

        export_hf(source.merged(), folder, check, ids, reference, lm, base,
                  chat_template_of(model_source, backbone_family(lm)))
        return {}
    if fmt == "peft":
        from gemma_panel.export.hf import write_hf_folder
        from gemma_panel.export.peft import export_peft

        base_folder = folder / ".base-hf"
        try:  # the unmerged model's transformers export leaves LoRA out: the base weights
            write_hf_folder(lm, base_folder, None)
            export_peft(lm, folder, check, ids, reference, base_folder, model_source, base)
        finally:
            shutil.rmtree(base_folder, ignore_errors=True)
        return {"merged": False}
    if fmt == "litert":
        from gemma_panel.export.litert import export_litert, sequence_length

        return export_litert(source.merged(), lm, folder, quantize, sequence_length(source),
                             check, ids, reference, base, source.validation)
    return _gguf(source, quantize, folder, check, ids, reference, base, model_source)


def _gguf(source, quantize, folder, check, ids, reference, base, model_source) -> dict:
    from gemma_panel.export import gguf, gguf_check, gguf_metadata
    from gemma_panel.models.gguf_reader import read_gguf

    model = source.merged()
    path = folder / gguf.GGUF_FILE
    sources = gguf.write_gguf_file(model, path, quantize, model_source)
    reader = read_gguf(path)
    if gguf.gguf_architecture(model.backbone) == "gemma4":
        return _gguf_gemma4(reader, sources, folder, check, ids, reference, base, quantize,
                            model_source)
    reference_path = gguf_metadata.bundled_gguf()
    gguf_check.compare_with_reference(check, reader,
                                      gguf_metadata.cached_reader(reference_path))
    gguf_check.dequantized_errors(check, reader, sources)
    del sources
    gguf.write_modelfile(folder)
    gguf_check.check_modelfile(check, folder, gguf.GGUF_FILE)
    quantized = quantize != "f32"
    validation = source.validation if quantized else None
    logits, ppl = gguf_check.transformers_check(check, folder, gguf.GGUF_FILE, quantize, ids,
                                                reference, validation)
    gguf_check.check_gguf_carries_lora(check, folder, quantize, ids, logits, reference, base,
                                       model_source)
    if quantized:
        gguf_check.same_gguf_in_gemma_panel(check, reader, folder, ids, logits)
    if quantized:
        from gemma_panel.export.verify import note_perplexity_change

        ref_ppl = perplexity(lambda x, m: keras_logits(source.lm, x, m), validation)
        note_perplexity_change(check, ref_ppl, ppl, f"GGUF {quantize} in transformers")
    check.note("file_size", f"{path.stat().st_size / 1e6:.1f} MB", bytes=path.stat().st_size)
    return {"gguf_file": gguf.GGUF_FILE, "reference_gguf": reference_path.name}


def _gguf_gemma4(reader, sources, folder, check, ids, reference, base, quantize,
                 model_source) -> dict:
    from gemma_panel.export import gguf, gguf_check, gguf_check_gemma4

    gguf_check_gemma4.verify(check, reader, folder, sources, quantize, ids, reference, base,
                             model_source)
    turns = ("<|turn>", "<turn|>")
    gguf.write_modelfile(folder, turns=turns)
    gguf_check.check_modelfile(check, folder, gguf.GGUF_FILE, turns)
    size = (folder / gguf.GGUF_FILE).stat().st_size
    check.note("file_size", f"{size / 1e6:.1f} MB", bytes=size)
    return {"gguf_file": gguf.GGUF_FILE}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("gemma_panel", "keras", "keras-hub", "jax", "tensorflow", "transformers",
                 "torch", "gguf", "peft", "ai-edge-litert"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    if shutil.which("llama-quantize"):
        out["llama-quantize"] = shutil.which("llama-quantize")
    return out
