"""GGUF export with the ``gguf`` package, following llama.cpp's conventions for Gemma.

What llama.cpp's ``convert_hf_to_gguf.py`` does for Gemma, and so what this does:

* tensor names: the Hugging Face names mapped by ``models/gguf_import.py``'s table, read in
  reverse (``blk.N.attn_q.weight`` ...); no ``output.weight`` (the head is tied);
  Gemma 4 (``gemma4``) has its own names, hyperparameters and tokenizer (``gguf_gemma4.py``),
  and its norms are stored without the ``+1``;
* every RMSNorm weight stored as ``1 + w`` (Gemma computes ``x * (1 + w)``);
* 1-D tensors (the norms) stay F32 in every file type; 2-D weights take the file type;
* metadata: ``general.architecture`` (``gemma3``; ``gemma`` for Gemma 1), the
  hyperparameters under ``<arch>.``, ``general.file_type``, ``general.quantization_version``,
  and the SentencePiece tokenizer (``tokenizer.ggml.*``: tokens, scores, token types,
  special ids, add-BOS/EOS, no space prefix) with the chat template.

The tokenizer metadata, chat template and context length come from ``gguf_metadata.py``.

Types: F32, F16, BF16, Q8_0, Q4_0, Q5_0 with ``gguf.quants``. For Q4_0 and Q5_0 the tied
embedding/output matrix is stored as Q8_0 (llama-quantize keeps it at Q6_K for these types,
which ``gguf.quants`` cannot write). K-quants (Q4_K_M, Q5_K_M, Q6_K, ...) go through
``llama-quantize`` from an F32 file when it is on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from gemma_panel.export import gguf_gemma4
from gemma_panel.export.gguf_gemma4 import check_text_only
from gemma_panel.export.gguf_metadata import chat_template_of, context_length, tokenizer_fields
from gemma_panel.export.manifest import ExportError
from gemma_panel.files import partial_name
from gemma_panel.models import gguf_gemma4 as gemma4_names
from gemma_panel.models.gguf_import import gguf_tensor_name

PYTHON_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q5_0")
LLAMA_QUANTIZE_TYPES = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s",
                        "q5_k_m", "q6_k")
GGUF_TYPES = PYTHON_TYPES + LLAMA_QUANTIZE_TYPES
GGUF_FILE = "model.gguf"

def gguf_architecture(backbone) -> str:
    name = type(backbone).__name__
    if name == "Gemma3Backbone":
        return "gemma3"
    if name == "Gemma4Backbone":
        check_text_only(backbone)
        return "gemma4"
    if name == "GemmaBackbone" and not getattr(backbone, "use_post_ffw_norm", False):
        return "gemma"
    raise ExportError(f"GGUF export supports Gemma 1, 3 and 4 models, not this {name} "
                      "(KerasHub has no Hugging Face weight map for Gemma 2); export 'preset' "
                      "or 'keras' instead.")


def hf_weights(model) -> tuple[dict, dict]:
    """(Hugging Face config, {HF name: float32 array}) of a merged model, via KerasHub."""
    from keras_hub.src.utils.transformers.export.hf_exporter import (
        MODEL_CONFIGS,
        MODEL_EXPORTERS,
    )

    backbone = model.backbone
    kind = type(backbone).__name__
    config = MODEL_CONFIGS[kind](backbone)
    weights = MODEL_EXPORTERS[kind](backbone, include_lm_head=True)
    return config, {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}


def tensor_type(gguf_name: str, values: np.ndarray, file_type: str):
    """The GGML type llama.cpp gives this tensor in a file of ``file_type``."""
    import gguf

    q = gguf.GGMLQuantizationType
    if values.ndim == 1 or file_type == "f32":
        return q.F32
    chosen = {"f16": q.F16, "bf16": q.BF16, "q8_0": q.Q8_0, "q4_0": q.Q4_0,
              "q5_0": q.Q5_0}[file_type]
    if gguf_name == "token_embd.weight" and file_type in ("q4_0", "q5_0"):
        chosen = q.Q8_0
    if chosen in (q.Q8_0, q.Q4_0, q.Q5_0) and values.shape[-1] % 32:
        chosen = q.F16  # rows must be whole 32-value blocks; llama.cpp falls back the same way
    return chosen


def encode_tensor(values: np.ndarray, qtype):
    """(data, raw_shape, raw_dtype) for ``GGUFWriter.add_tensor``."""
    import gguf

    q = gguf.GGMLQuantizationType
    if qtype == q.F32:
        return np.ascontiguousarray(values, dtype=np.float32), None, None
    if qtype == q.F16:
        return np.ascontiguousarray(values, dtype=np.float16), None, None
    data = gguf.quants.quantize(np.ascontiguousarray(values, dtype=np.float32), qtype)
    return data, data.shape, qtype


def file_type_enum(file_type: str):
    import gguf

    f = gguf.LlamaFileType
    return {"f32": f.ALL_F32, "f16": f.MOSTLY_F16, "bf16": f.MOSTLY_BF16,
            "q8_0": f.MOSTLY_Q8_0, "q4_0": f.MOSTLY_Q4_0, "q5_0": f.MOSTLY_Q5_0}[file_type]


def write_gguf(model, path: Path, file_type: str, model_source: str | None = None,
               name: str = "gemma_panel export") -> dict:
    """Write ``model`` (merged) as a GGUF of ``file_type``; return the HF-space source weights.

    The returned dict ({GGUF name: float32 values before the +1 and before quantization}) is
    what the verification compares the dequantized file against.
    """
    import gguf

    if file_type not in PYTHON_TYPES:
        raise ExportError(f"GGUF type '{file_type}' is not written in Python; choose one of "
                          f"{', '.join(PYTHON_TYPES)} (K-quants need llama-quantize).")
    arch = gguf_architecture(model.backbone)
    config, weights = hf_weights(model)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type("model")
    writer.add_name(name)
    if arch == "gemma4":
        gguf_gemma4.add_hyperparameters(writer, config, model.backbone,
                                        context_length(arch, model_source))
        writer.add_file_type(int(file_type_enum(file_type)))
        fields = gguf_gemma4.tokenizer_fields(model, chat_template_of(model_source, arch))
        weights = {gemma4_names.ROPE_FREQS: gguf_gemma4.rope_tensor(config), **weights}
    else:
        _add_hyperparameters(writer, arch, config, model.backbone, file_type, model_source)
        fields = tokenizer_fields(model, model_source)
    for key, (value, vtype, sub) in fields.items():
        writer.add_key_value(key, value, vtype, sub)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    sources = _add_tensors(writer, arch, weights, file_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sources


def _add_hyperparameters(writer, arch: str, config: dict, backbone, file_type: str,
                         model_source: str | None) -> None:
    """The hyperparameters as llama.cpp's converter reads them: from the Hugging Face config
    (KerasHub's exporter writes it; Gemma 1's halves KerasHub's intermediate_dim)."""
    import gguf

    writer.add_context_length(context_length(arch, model_source))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps",
                                                   backbone.layer_norm_epsilon)))
    writer.add_key_length(int(config["head_dim"]))
    writer.add_value_length(int(config["head_dim"]))
    writer.add_file_type(int(file_type_enum(file_type)))
    if arch == "gemma3":
        writer.add_rope_freq_base(float(config["rope_theta"]))
        writer.add_sliding_window(int(config["sliding_window"]))
        factor = float(getattr(backbone, "global_rope_scaling_factor", 1.0) or 1.0)
        if factor != 1.0:
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(factor)
    writer.add_head_count_kv(int(config["num_key_value_heads"]))


def _add_tensors(writer, arch: str, weights: dict, file_type: str) -> dict:
    """Add every tensor in llama.cpp's names, order and types; return {GGUF name: source}."""
    sources = {}
    for hf_name, values in _llama_cpp_order(weights):
        if arch == "gemma4":  # norms as they are; rope_freqs is already a GGUF name
            gguf_name = hf_name if hf_name == gemma4_names.ROPE_FREQS else (
                gemma4_names.gguf_name(hf_name))
        else:
            gguf_name = gguf_tensor_name(arch, hf_name)
        if gguf_name is None:
            raise ExportError(f"No llama.cpp name for tensor '{hf_name}'.")
        sources[gguf_name] = values
        shift = arch != "gemma4" and hf_name.endswith("norm.weight")
        stored = values + 1.0 if shift else values
        data, raw_shape, raw_dtype = encode_tensor(stored, tensor_type(gguf_name, values,
                                                                       file_type))
        writer.add_tensor(gguf_name, data, raw_shape=raw_shape, raw_dtype=raw_dtype)
    return sources


def _llama_cpp_order(weights: dict):
    """token_embd first, then block by block, then output_norm (llama.cpp's order)."""
    def key(name):
        if name == gemma4_names.ROPE_FREQS:  # llama.cpp's extra tensors come first
            return (-1, 0, name)
        if name.startswith("model.layers."):
            return (1, int(name.split(".")[2]), name)
        return (0 if "embed" in name or "rope_freqs" in name else 2, 0, name)

    for name in sorted(weights, key=key):
        yield name, weights[name]


def write_gguf_file(model, path: Path, file_type: str, model_source: str | None = None) -> dict:
    """``write_gguf`` for the Python types; K-quants: an F32 file, then ``llama-quantize``."""
    if file_type in PYTHON_TYPES:
        return write_gguf(model, path, file_type, model_source)
    scratch = Path(path).with_name(partial_name(Path(path).name + ".f32"))
    try:
        sources = write_gguf(model, scratch, "f32", model_source)
        llama_quantize(scratch, Path(path), file_type)
    finally:
        scratch.unlink(missing_ok=True)
    return sources


def llama_quantize(source: Path, target: Path, file_type: str) -> None:
    """Run llama.cpp's ``llama-quantize`` (for K-quants); raise ExportError in words."""
    tool = shutil.which("llama-quantize")
    if tool is None:
        raise ExportError(
            f"GGUF type '{file_type}' needs llama.cpp's llama-quantize on PATH (install "
            "llama.cpp, or its Debian package, and retry); the gguf package writes only "
            f"{', '.join(PYTHON_TYPES)}.")
    result = subprocess.run([tool, str(source), str(target), file_type.upper(),
                             str(os.cpu_count() or 1)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0 or not target.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ExportError(f"llama-quantize failed (exit {result.returncode}): "
                          f"{' / '.join(tail)}")


def write_modelfile(folder: Path, gguf_file: str = GGUF_FILE,
                    turns: tuple[str, str] = ("<start_of_turn>", "<end_of_turn>")) -> Path:
    """An Ollama ``Modelfile`` beside the GGUF: FROM, the turn template, stop tokens.

    ``turns``: the family's (start, end) markers (Gemma 4: ``<|turn>``, ``<turn|>``)."""
    start, end = turns
    text = (
        f"# ollama create my-gemma -f Modelfile && ollama run my-gemma\n"
        f"FROM ./{gguf_file}\n"
        f'TEMPLATE """{{{{- if .System }}}}{start}user\n{{{{ .System }}}}\n\n'
        f"{{{{ else if .Prompt }}}}{start}user\n{{{{ end }}}}"
        f"{{{{- if .Prompt }}}}{{{{ .Prompt }}}}{end}\n{{{{ end }}}}"
        f'{start}model\n{{{{ .Response }}}}{end}\n"""\n'
        f'PARAMETER stop "{end}"\n'
        f'PARAMETER stop "{start}"\n'
        'PARAMETER stop "<eos>"\n'
    )
    path = Path(folder) / "Modelfile"
    path.write_text(text)
    return path
