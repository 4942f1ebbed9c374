"""Verifying a GGUF export two ways, as issue 7 asks.

1. Read back with ``gguf.GGUFReader`` against a llama.cpp-made Gemma GGUF (the bundled
   Gemma 3 270M): the same metadata keys (but provenance keys such as ``general.license``
   or ``quantize.imatrix.*``, which describe how that file was made), the same tensor names
   and, when the model has the reference's dimensions, the same shapes and hyperparameter
   values; and every dequantized tensor within its type's error bound of the source weights.
2. ``transformers`` loads the file (``gguf_file=``) and its logits match the tuned model's
   within the type's quantization error, and sit measurably closer to the tuned model than
   to the base model written as the same type (``check_gguf_carries_lora``): what ties a
   quantized file to the tuned model, since 1.'s bounds compare it with what was written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gemma_panel.export.verify import (
    Verification,
    check_carries_lora,
    compare_logits,
    torch_logits,
)

# Keys that say who made a file and from what, not what the model is; llama.cpp writes them
# from the Hugging Face model card, and an export of a fine-tuned model has its own.
PROVENANCE_PREFIXES = ("general.", "quantize.")
REQUIRED_GENERAL = ("general.architecture", "general.type", "general.name",
                    "general.file_type", "general.quantization_version")
# Keys llama.cpp writes only when the source has them: the bundled 270M's file has no chat
# template (its Hugging Face tokenizer_config had none); ours always carries Gemma's.
OPTIONAL_KEYS = ("tokenizer.chat_template",)

# Error of one dequantized value, in units of its block's scale d = max|x| / levels, for
# round-to-nearest with a float16 scale; Q4_0/Q5_0 clip the value opposite the block's
# maximum by up to one step. Float types: relative bounds.
BLOCK_LEVELS = {"Q8_0": 127.0, "Q4_0": 8.0, "Q5_0": 16.0}
BLOCK_STEPS = {"Q8_0": 0.5 + 127 * 2.0 ** -11, "Q4_0": 1.0 + 8 * 2.0 ** -11,
               "Q5_0": 1.0 + 16 * 2.0 ** -11}
RELATIVE = {"F32": 0.0, "F16": 2.0 ** -11, "BF16": 2.0 ** -8}
# K-quants (llama-quantize): no closed-form bound is used; relative RMS error at most this.
K_RMS = {"Q6_K": 0.02, "Q5_K": 0.04, "Q4_K": 0.08, "Q3_K": 0.16, "Q2_K": 0.3}



def compare_with_reference(check: Verification, ours, reference) -> None:
    """Metadata keys, tensor names and (same-size models) shapes and values."""
    ours_keys = set(ours.fields)
    ref_keys = set(reference.fields)
    model_keys = {k for k in ref_keys if not k.startswith(PROVENANCE_PREFIXES)}
    missing = sorted(model_keys - ours_keys)
    extra = sorted(k for k in ours_keys - ref_keys
                   if k not in REQUIRED_GENERAL and k not in OPTIONAL_KEYS)
    check.check("gguf_metadata_keys", not missing and not extra,
                f"{len(model_keys)} model keys of the llama.cpp file; missing {missing or 'none'}"
                f", extra {extra or 'none'}", missing=missing, extra=extra)
    check.check("gguf_general_keys", all(k in ours_keys for k in REQUIRED_GENERAL),
                f"has {', '.join(REQUIRED_GENERAL)}")

    arch = ours.fields["general.architecture"].contents()
    ref_arch = reference.fields["general.architecture"].contents()
    check.check("gguf_architecture", arch == ref_arch, f"{arch} (reference {ref_arch})")
    ours_t = {t.name: tuple(int(d) for d in t.shape) for t in ours.tensors}
    ref_t = {t.name: tuple(int(d) for d in t.shape) for t in reference.tensors}
    blocks = int(ours.fields[f"{arch}.block_count"].contents())
    expected = {n for n in ref_t if not n.startswith("blk.") or int(n.split(".")[1]) < blocks}
    ref_blocks = int(reference.fields[f"{ref_arch}.block_count"].contents())
    if blocks > ref_blocks:  # a deeper model: blocks beyond the reference's, by pattern
        per_block = {n.split(".", 2)[2] for n in ref_t if n.startswith("blk.0.")}
        expected |= {f"blk.{i}.{s}" for i in range(ref_blocks, blocks) for s in per_block}
    check.check("gguf_tensor_names", set(ours_t) == expected,
                f"{len(ours_t)} tensors; missing {sorted(expected - set(ours_t))[:5] or 'none'}"
                f", extra {sorted(set(ours_t) - expected)[:5] or 'none'}")

    same_size = all(
        ours.fields[k].contents() == reference.fields[k].contents()
        for k in (f"{arch}.embedding_length", f"{arch}.block_count")
        if k in ours.fields and k in reference.fields
    ) and len(ours.fields["tokenizer.ggml.tokens"].contents()) == len(
        reference.fields["tokenizer.ggml.tokens"].contents())
    if not same_size:
        check.note("gguf_shapes_and_values", "not compared: the model's dimensions differ "
                   "from the reference's (names and keys were)")
        return
    wrong = [n for n in ref_t if ours_t.get(n) != ref_t[n]]
    check.check("gguf_tensor_shapes", not wrong, f"{len(ref_t) - len(wrong)}/{len(ref_t)} "
                f"shapes equal the llama.cpp file's; differ: {wrong[:5] or 'none'}")
    values = [k for k in sorted(model_keys & ours_keys - {"GGUF.kv_count"})  # provenance
              if ours.fields[k].contents() != reference.fields[k].contents()]
    check.check("gguf_metadata_values", not values,
                f"every model key equals the llama.cpp file's value; differ: {values or 'none'}",
                differ=values)


def dequantized_errors(check: Verification, ours, sources: dict, norm_shift: float = 1.0) -> None:
    """Every tensor, dequantized, against the weights it was written from (the norms plus
    ``norm_shift``: llama.cpp's +1 for Gemma 1-3, none for Gemma 4)."""
    from gguf.quants import dequantize

    worst, failed = {}, []
    for tensor in ours.tensors:
        source = sources.get(tensor.name)
        if source is None:
            failed.append(f"{tensor.name}: not written from the model")
            continue
        kind = tensor.tensor_type.name
        values = np.asarray(dequantize(tensor.data, tensor.tensor_type), np.float32)
        values = values.reshape(source.shape)
        expected = source + norm_shift if tensor.name.endswith("norm.weight") else source
        err = np.abs(values - expected)
        if kind in BLOCK_LEVELS:
            blocks = np.abs(expected).reshape(-1, 32).max(-1, keepdims=True)
            # + levels x half the smallest float16 step: a scale below 6.1e-5 is subnormal
            bound = (blocks / BLOCK_LEVELS[kind] * BLOCK_STEPS[kind]
                     + BLOCK_LEVELS[kind] * 2.0 ** -25)
            ratio = float((err.reshape(-1, 32) / bound).max())
        elif kind == "F32":
            ratio = 0.0 if float(err.max()) == 0.0 else float("inf")  # must be bit-exact
        elif kind in RELATIVE:  # round to nearest: half an ulp; F16 subnormals: 2^-25
            floor = 2.0 ** -25 if kind == "F16" else 1e-38
            ratio = float((err / (np.abs(expected) * RELATIVE[kind] + floor)).max())
        else:
            rms = float(np.sqrt((err ** 2).mean()) / (np.sqrt((expected ** 2).mean()) + 1e-12))
            ratio = rms / K_RMS.get(kind[:4], 0.3)
        worst[kind] = max(worst.get(kind, 0.0), ratio)
        if ratio > 1.0:
            failed.append(f"{tensor.name} ({kind}): error {ratio:.2f}x its bound")
    check.check("gguf_dequantized_within_bound", not failed,
                f"{len(ours.tensors)} tensors; worst error / bound per type: "
                + ", ".join(f"{k} {v:.3f}" for k, v in sorted(worst.items()))
                + (f"; failing: {failed[:3]}" if failed else ""),
                worst_ratio=worst)


def transformers_gguf(folder: Path, file_name: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=file_name,
                                                dtype=torch.float32).eval()


def transformers_check(check: Verification, folder: Path, file_name: str, file_type: str,
                       ids, reference, validation=None):
    """Load the GGUF in transformers and compare; return (its logits, its perplexity).

    F32 must give the tuned model's logits (within 1e-3). A quantized file cannot, so its
    logits are compared with gemma_panel's own reading of the same file
    (``same_gguf_in_gemma_panel``) and the drift from the tuned model is reported.
    """
    from gemma_panel.export.verify import perplexity

    model = transformers_gguf(folder, file_name)
    logits = torch_logits(model, ids)
    if file_type == "f32":
        compare_logits(check, "transformers_gguf_logits", logits, reference, 1e-3)
    else:
        diff = float(np.abs(logits - reference).max())
        top1 = float((logits.argmax(-1) == reference.argmax(-1)).mean())
        check.note("quantization_logit_drift",
                   f"{file_type}: max |logit difference| from the tuned model {diff:.3g}, top-1 "
                   f"agreement {top1:.3f} on {ids.shape[1]} probe tokens", max_abs_diff=diff,
                   top1_agreement=top1)
    ppl = perplexity(lambda x, m: torch_logits(model, x, m), validation)
    return logits, ppl


def check_gguf_carries_lora(check: Verification, folder: Path, file_type: str, ids, logits,
                            reference, base, model_source: str | None) -> None:
    """The base model written as a GGUF of the same type and read by transformers the same
    way is the consumer's base: its distance from the base's Keras logits is this file type's
    quantization error (plus runtime noise), which ``carries_lora`` takes out."""
    from gemma_panel.export import gguf

    def base_gguf(scratch):
        gguf.write_gguf_file(base.model, scratch / gguf.GGUF_FILE, file_type, model_source)
        return torch_logits(transformers_gguf(scratch, gguf.GGUF_FILE), ids)

    check_carries_lora(check, "gguf_carries_lora", folder, logits, reference, base, base_gguf)


def same_gguf_in_gemma_panel(check: Verification, reader, folder: Path, ids,
                             transformers_logits) -> None:
    """Read the same file with ``models/gguf_import`` into KerasHub; transformers must agree.

    Both dequantize the same blocks, so the logits agree to float error whatever the type:
    what remains between the file and the tuned model is quantization error alone.
    """
    import shutil

    import keras_hub

    from gemma_panel.export.verify import keras_logits
    from gemma_panel.models.gguf_import import convert_gguf_to_hf

    scratch = Path(folder) / ".gguf-import"
    try:
        convert_gguf_to_hf(reader, scratch)
        ours = keras_logits(keras_hub.models.CausalLM.from_preset(str(scratch)), ids)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    compare_logits(check, "transformers_gguf_logits", transformers_logits, ours, 1e-3)


def check_modelfile(check: Verification, folder: Path, gguf_file: str,
                    turns: tuple[str, str] = ("<start_of_turn>", "<end_of_turn>")) -> None:
    text = (Path(folder) / "Modelfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    from_line = next((line for line in lines if line.startswith("FROM ")), "")
    target = (Path(folder) / from_line[5:].strip()).resolve() if from_line else None
    check.check("modelfile", bool(target) and target.is_file() and target.name == gguf_file
                and f"{turns[0]}model" in text and f'PARAMETER stop "{turns[1]}"' in text,
                "Modelfile: FROM the GGUF beside it, Gemma's turn TEMPLATE, stop tokens")
