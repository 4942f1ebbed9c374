"""What a GGUF export says beside its tensors: the tokenizer, the chat template, the context.

The tokenizer metadata is copied from the source GGUF when the run started from one (the
bundled Gemma 3 270M does): it is exactly what llama.cpp wrote. Otherwise it is derived from
the SentencePiece model as llama.cpp derives it (``tokenizer_from_sentencepiece``). Source
GGUFs are read once per process (``cached_reader``).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

from gemma_panel.export.manifest import ExportError
from gemma_panel.models.gguf_tokenizer import CONTROL, USER_DEFINED

# Gemma 4's turns for sources without a template: system, user and model turns as
# `Gemma4ChatTemplate` writes them (thinking off; no tool calls), each content trimmed.
GEMMA4_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<|turn>' + role + '\n' + (message['content'] | trim) + '<turn|>\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|turn>model\n' }}{%- endif -%}"
)

# Gemma's chat template (as in Gemma 3's tokenizer_config.json), for sources without one.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/"
    "assistant/...\") }}\n    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n            {%- endif -%}\n"
    "        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)


def cached_reader(path: str | os.PathLike):
    """A ``GGUFReader`` kept per (path, size, mtime): the 270M's 262k-token vocabulary takes
    seconds to parse, and one export reads the source and the reference file several times."""
    stat = os.stat(path)
    return _reader(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=2)
def _reader(path: str, size: int, mtime: int):
    from gemma_panel.models.gguf_reader import read_gguf

    return read_gguf(path)


def bundled_gguf() -> Path:
    """The bundled llama.cpp-made Gemma 3 270M GGUF (hashed once per process and home)."""
    from gemma_panel.models.cache import models_dir

    return _bundled(str(models_dir()))


@lru_cache(maxsize=4)
def _bundled(models_dir: str) -> Path:
    from gemma_panel.models.loader import bundled_gguf_path

    return bundled_gguf_path()


def source_gguf(model_source: str | None) -> Path | None:
    """The GGUF a run's model came from (the bundled 270M or a .gguf path), if any."""
    if not model_source:
        return None
    from gemma_panel.models.errors import ModelSourceError
    from gemma_panel.models.loader import resolve_source

    try:
        resolved = resolve_source(model_source)
    except ModelSourceError:
        return None
    if resolved.kind == "bundled":
        return bundled_gguf()
    if resolved.kind == "gguf":
        return Path(resolved.location)
    return None


def tokenizer_from_gguf(path: Path) -> dict:
    """The ``tokenizer.*`` fields of a GGUF, as {key: (value, value type, sub type)}."""
    reader = cached_reader(path)
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            sub = field.types[1] if len(field.types) > 1 else None
            out[key] = (field.contents(), field.types[0], sub)
    return out


# Tokens that Gemma's Hugging Face tokenizer lists as special, which llama.cpp's converter
# stores as CONTROL (``<unk>`` included); every other added token is USER_DEFINED.
_GEMMA_SPECIAL = {"<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>",
                  "<end_of_turn>"}
_UNUSED = re.compile(r"<unused\d+>")


def tokenizer_from_sentencepiece(tokenizer) -> dict:
    """llama.cpp's tokenizer metadata from a KerasHub SentencePiece tokenizer.

    As llama.cpp's converter: each piece's text, score and type from the model file; tokens
    Hugging Face lists as special (``_GEMMA_SPECIAL`` and ``<unusedN>``) CONTROL; other
    user-defined pieces respelled with real spaces; added tokens scored -1000. On Gemma 3
    270M this reproduces the llama.cpp file's 262,144 tokens, scores and types exactly
    (tests/export/test_exports_270m.py).
    """
    import gguf
    from sentencepiece import sentencepiece_model_pb2 as pb

    v = gguf.GGUFValueType
    proto = pb.ModelProto()
    proto.ParseFromString(tokenizer.proto)
    tokens, scores, types = [], [], []
    for piece in proto.pieces:
        kind, text, score = int(piece.type), piece.piece, float(piece.score)
        if text in _GEMMA_SPECIAL or _UNUSED.fullmatch(text):
            kind = CONTROL
        elif kind == USER_DEFINED:
            text = text.replace("\u2581", " ")
        if kind in (CONTROL, USER_DEFINED):
            score = -1000.0
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    spec = proto.trainer_spec
    return {
        "tokenizer.ggml.model": ("llama", v.STRING, None),
        "tokenizer.ggml.pre": ("default", v.STRING, None),
        "tokenizer.ggml.tokens": (tokens, v.ARRAY, v.STRING),
        "tokenizer.ggml.scores": (scores, v.ARRAY, v.FLOAT32),
        "tokenizer.ggml.token_type": (types, v.ARRAY, v.INT32),
        "tokenizer.ggml.bos_token_id": (int(spec.bos_id), v.UINT32, None),
        "tokenizer.ggml.eos_token_id": (int(spec.eos_id), v.UINT32, None),
        "tokenizer.ggml.unknown_token_id": (int(spec.unk_id), v.UINT32, None),
        "tokenizer.ggml.padding_token_id": (int(spec.pad_id), v.UINT32, None),
        "tokenizer.ggml.add_bos_token": (True, v.BOOL, None),
        "tokenizer.ggml.add_sep_token": (False, v.BOOL, None),
        "tokenizer.ggml.add_eos_token": (False, v.BOOL, None),
        "tokenizer.ggml.add_space_prefix": (bool(proto.normalizer_spec.add_dummy_prefix),
                                            v.BOOL, None),
    }


def chat_template_of(model_source: str | None, family: str | None = None) -> str:
    """The source's own chat template (a GGUF's, a Hugging Face folder's), else the family's:
    Gemma 4's turns for ``gemma4``, Gemma's otherwise."""
    path = source_gguf(model_source)
    if path is not None:
        field = cached_reader(path).fields.get("tokenizer.chat_template")
        if field is not None:
            return field.contents()
    folder = Path(model_source) if model_source else None
    if folder is not None and folder.is_dir():
        if (folder / "chat_template.jinja").is_file():
            return (folder / "chat_template.jinja").read_text()
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            config = {}
        if isinstance(config.get("chat_template"), str):
            return config["chat_template"]
    return GEMMA4_CHAT_TEMPLATE if family == "gemma4" else GEMMA_CHAT_TEMPLATE


def context_length(arch: str, model_source: str | None) -> int:
    path = source_gguf(model_source)
    if path is not None:
        field = cached_reader(path).fields.get(f"{arch}.context_length")
        if field is not None:
            return int(field.contents())
    from gemma_panel.models.registry import get_model_spec

    spec = get_model_spec(str(model_source)) if model_source else None
    return int(getattr(spec, "context_length", 0) or (32768 if arch == "gemma3" else 8192))


def tokenizer_fields(model, model_source: str | None) -> dict:
    """The ``tokenizer.*`` fields of the GGUF, as {key: (value, value type, sub type)}."""
    import gguf

    backbone = model.backbone
    source_path = source_gguf(model_source)
    # llama.cpp's derivation first, then whatever the source GGUF says (it wins: llama.cpp
    # wrote it from the original tokenizer files, which a KerasHub tokenizer no longer has).
    fields = tokenizer_from_sentencepiece(model.preprocessor.tokenizer)
    if source_path is not None:
        fields.update(tokenizer_from_gguf(source_path))
    if "tokenizer.chat_template" not in fields:  # the bundled 270M's file has none
        fields["tokenizer.chat_template"] = (GEMMA_CHAT_TEMPLATE, gguf.GGUFValueType.STRING,
                                             None)
    vocab = len(fields["tokenizer.ggml.tokens"][0])
    if vocab != backbone.vocabulary_size:
        raise ExportError(f"The tokenizer has {vocab} tokens but the model "
                          f"{backbone.vocabulary_size} embeddings; the source GGUF is not "
                          "this model's.")
    return fields
