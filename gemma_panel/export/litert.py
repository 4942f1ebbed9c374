"""LiteRT (TensorFlow Lite) for phones and edge devices: ``model.tflite`` serving logits.

Keras 3.15's ``model.export(path, format="litert")`` runs only on the TensorFlow and PyTorch
backends (on JAX it raises ``ValueError``); what it does there is write a SavedModel and hand
it to ``tf.lite.TFLiteConverter.from_saved_model``. This module takes the same path from JAX:
the merged model's SavedModel (``savedmodel.write_savedmodel``, jax2tf) with a fixed input
signature, converted with the builtin ops only (no Flex/Select TF ops, so the plain LiteRT
runtime runs it).

The signature (``serving_default``): ``token_ids`` and ``padding_mask``, int32, shape
``(1, sequence_length)`` with the run's ``data.sequence_length`` (``DEFAULT_LENGTH`` for a
model without a recipe); output ``output_0``, float32 logits ``(1, sequence_length,
vocabulary)``. A shorter prompt is right-padded with mask 0: attention is causal, so the
real positions' logits do not depend on the padding (checked on the probe).

``int8`` (the default) is the converter's dynamic-range quantization: weights of the ops that
have int8 kernels (matmuls, the embedding lookup) are stored as int8 with float scales,
activations stay float; every other tensor stays float32 (the manifest counts both). ``f32``
converts without quantization. The check runs the file in ``ai_edge_litert``'s interpreter.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from gemma_panel.export.manifest import ExportError
from gemma_panel.export.savedmodel import (
    SAVEDMODEL_TOLERANCE,
    input_names,
    write_savedmodel,
)
from gemma_panel.export.verify import (
    LoraBase,
    Verification,
    check_carries_lora,
    compare_logits,
    keras_logits,
    note_perplexity_change,
    perplexity,
)
from gemma_panel.models.lora import lora_layers

LITERT_TYPES = ("int8", "f32")
DEFAULT_LITERT_TYPE = "int8"
LITERT_FILE = "model.tflite"
DEFAULT_LENGTH = 256
# int8 drift bound, judged: top-1 agreement with the tuned model on the checked sequences.
# Dynamic-range int8 moves logits (activations are quantized per row inside each matmul), so
# the max |difference| is reported against the float32 bound but only top-1 is judged.
INT8_MIN_TOP1 = 0.75
RANDOM_SEED = 0
# float32: SavedModel's 1e-4, or 2e-5 of the largest logit when more (XNNPACK sums in its own
# order). Measured on Gemma 3 270M, 128 tokens, logits up to 54.6: 4.1e-4 (7.5e-6 relative).
LITERT_RELATIVE = 2e-5


def sequence_length(source) -> int:
    """The signature's fixed length: the run's training sequence length."""
    recipe = getattr(source, "recipe", None)
    return int(recipe.data.sequence_length) if recipe is not None else DEFAULT_LENGTH


def check_litert_request(quantize: str | None) -> str:
    """The LiteRT type (``int8`` by default); refused up front, before loading the model, when
    it is unknown or the LiteRT runtime is missing."""
    quantize = quantize or DEFAULT_LITERT_TYPE
    if quantize not in LITERT_TYPES:
        raise ExportError(f"LiteRT type '{quantize}' is not supported; choose one of "
                          f"{', '.join(LITERT_TYPES)}.")
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError as exc:
        raise ExportError("LiteRT exports are checked in the LiteRT interpreter, which is not "
                          "installed; pip install 'gemma-panel[edge]' and retry.") from exc
    return quantize


def write_tflite(model, folder: Path, quantize: str, length: int) -> Path:
    """Convert a merged model to ``folder/model.tflite`` (and copy ``tokenizer.model``)."""
    import tensorflow as tf

    scratch = Path(folder) / ".savedmodel"
    try:
        saved = write_savedmodel(model, scratch, length=length)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        if quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            data = converter.convert()
        except Exception as exc:  # the converter's ConverterError lists the failing ops
            raise ExportError(unconvertible(exc)) from exc
        if (scratch / "tokenizer.model").is_file():
            shutil.copy(scratch / "tokenizer.model", Path(folder) / "tokenizer.model")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = Path(folder) / LITERT_FILE
    path.write_bytes(data)
    return path


def unconvertible(exc: Exception) -> str:
    """One sentence naming the ops the converter could not lower, from its error text."""
    text = str(exc)
    ops = sorted(set(re.findall(r"'((?:tf|stablehlo|mhlo|chlo|vhlo)\.[A-Za-z0-9_.]+)'", text)))
    what = f"the op(s) {', '.join(ops)}" if ops else "an op"
    return (f"The LiteRT converter cannot lower {what} of this model to LiteRT's builtin ops "
            f"({text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__}); "
            "export 'savedmodel' or 'gguf' instead.")


class LiteRTModel:
    """A ``.tflite`` file in the LiteRT interpreter, called like ``keras_logits``."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        self.signatures = self.interpreter.get_signature_list()
        self.runner = self.interpreter.get_signature_runner("serving_default")
        details = self.runner.get_input_details()
        self.length = int(details["token_ids"]["shape"][1])
        self.input_shapes = {k: [int(n) for n in v["shape"]] for k, v in details.items()}

    def logits(self, ids: np.ndarray, padding_mask: np.ndarray | None = None) -> np.ndarray:
        """Float32 logits (batch, n, vocabulary) for ids of n <= length tokens, right-padded."""
        ids = np.asarray(ids, "int32")
        mask = np.ones_like(ids) if padding_mask is None else np.asarray(padding_mask, "int32")
        n = ids.shape[1]
        if n > self.length:
            raise ExportError(f"{n} tokens do not fit the LiteRT signature's {self.length}.")
        rows = []
        for row_ids, row_mask in zip(ids, mask):
            token_ids = np.zeros((1, self.length), "int32")
            token_ids[0, :n] = row_ids
            full_mask = np.zeros((1, self.length), "int32")
            full_mask[0, :n] = row_mask
            inputs = {"token_ids": token_ids, "padding_mask": full_mask}
            if "position_ids" in self.input_shapes:  # Gemma 4, as keras_logits feeds them
                positions = np.maximum(np.cumsum(full_mask, axis=-1) - 1, 0)
                inputs["position_ids"] = positions.astype("int32")
            out = self.runner(**inputs)
            rows.append(np.asarray(next(iter(out.values())), np.float32)[0, :n])
        return np.stack(rows)


def check_sequences(ids: np.ndarray, length: int, vocabulary: int) -> list[np.ndarray]:
    """The probe (right-padded in the file) and a full-length random sequence (every position
    of the signature), both starting with the probe's BOS."""
    rng = np.random.default_rng(RANDOM_SEED)
    full = rng.integers(3, vocabulary, size=(1, length)).astype("int32")
    full[0, 0] = ids[0, 0]
    return [ids[:, :length], full]


def compare_sequences(check: Verification, name: str, exported: list, tuned: list,
                      tolerance: float, quantize: str) -> None:
    """Max |logit difference| over every checked position against ``tolerance`` (f32), or the
    top-1 agreement against ``INT8_MIN_TOP1`` with the difference reported (int8)."""
    ours = np.concatenate([x[0] for x in exported])[None]
    theirs = np.concatenate([x[0] for x in tuned])[None]
    if quantize == "f32":
        compare_logits(check, "litert_logits", ours, theirs, tolerance)
        return
    diff = float(np.abs(ours - theirs).max())
    top1 = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
    check.check("litert_int8_logits", top1 >= INT8_MIN_TOP1,
                f"int8: top-1 agreement {top1:.3f} (bound {INT8_MIN_TOP1}) on "
                f"{ours.shape[1]} positions of {len(exported)} sequences; max |logit "
                f"difference| {diff:.3g} (float32's bound {tolerance:g})",
                max_abs_diff=diff, top1_agreement=top1, bound=INT8_MIN_TOP1)


def constant_bytes(path: Path) -> dict[str, dict[str, int]]:
    """Bytes of the file's constant tensors by type and by the first op that reads each
    (``{"INT8": {"FULLY_CONNECTED": n}, "FLOAT32": {"GATHER_ND": n}}``), from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph, seen, out = model.Subgraphs(0), set(), {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = ops.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        for j in range(op.InputsLength()):
            tensor = graph.Tensors(op.Inputs(j)) if op.Inputs(j) >= 0 else None
            if tensor is None or tensor.Buffer() in seen:
                continue
            buffer = model.Buffers(tensor.Buffer())
            size = buffer.DataLength() or (buffer.Size() if buffer.Offset() else 0)
            if size:
                seen.add(tensor.Buffer())
                by_op = out.setdefault(types.get(tensor.Type(), "?"), {})
                by_op[name] = by_op.get(name, 0) + int(size)
    return out


def note_tensor_types(check: Verification, path: Path) -> None:
    """Which constants the file holds at int8 and which stayed float32, by op: dynamic-range
    quantization leaves float32 the weights of ops without an int8 kernel."""
    found = constant_bytes(path)
    text = "; ".join(f"{kind.lower()}: " + ", ".join(
        f"{op} {size / 1e6:.1f} MB" for op, size in sorted(by_op.items(), key=lambda x: -x[1]))
        for kind, by_op in sorted(found.items()) if kind in ("INT8", "FLOAT32"))
    check.note("litert_tensor_types", f"constants by the op that reads them: {text}",
               int8_bytes=sum(found.get("INT8", {}).values()),
               float32_bytes=sum(found.get("FLOAT32", {}).values()), by_op=found)


def export_litert(model, tuned, folder: Path, quantize: str, length: int,
                  check: Verification, ids, reference, base: LoraBase | None = None,
                  validation=None) -> dict:
    """Write ``model.tflite`` from the merged ``model``, run it in LiteRT, compare with the
    tuned model ``tuned`` (Keras), and report size, tensor types and (int8) perplexity."""
    if lora_layers(model):  # the file would compute every adapter beside its float kernel
        raise ExportError("Merge LoRA before converting to LiteRT (source.merged()).")
    path = write_tflite(model, folder, quantize, length)
    loaded = LiteRTModel(path)
    expected = {name: [1, length] for name in input_names(model)}
    check.check("litert_signature", loaded.input_shapes == expected,
                f"serving_default takes {loaded.input_shapes} (expected {expected})")
    sequences = check_sequences(ids, length, int(reference.shape[-1]))
    exported = [loaded.logits(x) for x in sequences]
    tuned_logits = [reference[:, :length]] + [keras_logits(tuned, x) for x in sequences[1:]]
    tolerance = max(SAVEDMODEL_TOLERANCE,
                    LITERT_RELATIVE * max(float(np.abs(x).max()) for x in tuned_logits))
    compare_sequences(check, "litert_logits", exported, tuned_logits, tolerance, quantize)
    check_carries_lora(check, "litert_carries_lora", folder, exported[0], reference[:, :length],
                       base, lambda scratch: LiteRTModel(write_tflite(
                           base.model, scratch, quantize, length)).logits(sequences[0]))
    if quantize == "int8":
        note_tensor_types(check, path)
        ref_ppl = perplexity(lambda x, m: keras_logits(tuned, x, m), validation)
        ppl = perplexity(loaded.logits, validation)
        note_perplexity_change(check, ref_ppl, ppl, f"LiteRT {quantize}")
    size = path.stat().st_size
    check.note("file_size", f"{size / 1e6:.1f} MB", bytes=size)
    return {"litert_file": LITERT_FILE, "sequence_length": length,
            "signature": {**expected, "output_0": [1, length, int(reference.shape[-1])]}}
