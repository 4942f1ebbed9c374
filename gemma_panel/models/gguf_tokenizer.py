"""A SentencePiece model rebuilt from the vocabulary inside a GGUF file.

A GGUF made by llama.cpp from a SentencePiece model (``tokenizer.ggml.model == "llama"``: Llama 2,
Gemma 1-3, ...) keeps the pieces, their scores and their types, but not the ``tokenizer.model``
file itself. KerasHub's ``GemmaTokenizer`` / ``Gemma3Tokenizer`` want that file's bytes
(``proto=``), so :func:`sentencepiece_proto_from_gguf` writes them back.

Three things llama.cpp's converter changed have to be undone to tokenize like the original:

* **Special tokens.** Every token that Hugging Face lists as "special" is stored as CONTROL.
  In SentencePiece a CONTROL piece is never matched in text, but in Gemma's ``tokenizer.model``
  only ``<pad>``, ``<eos>`` and ``<bos>`` are CONTROL; ``<start_of_turn>``, ``<end_of_turn>``,
  ``<mask>``, ``<unusedN>``, ... are USER_DEFINED, so a prompt that spells out
  ``<start_of_turn>user`` gets id 105. We keep CONTROL only for the bos/eos/pad ids and make
  every other CONTROL piece USER_DEFINED (Gemma 3: 3 CONTROL, 6410 USER_DEFINED, as the
  original).
* **The unknown piece.** ``<unk>`` is stored as CONTROL; SentencePiece needs exactly one UNKNOWN.
* **Spaces.** User-defined pieces of spaces (``"▁▁"``..) are stored with real spaces; SentencePiece
  matches user-defined pieces after it has escaped spaces to ``"▁"``, so they are respelled.

Normal pieces keep their scores (in Gemma's file they fall by one per position, which is the
merge order SentencePiece's BPE uses). See ``docs/tokenizer.md`` for the measurements.
"""

from __future__ import annotations

import os
import re
from typing import Any

from gemma_panel.models.errors import ModelSourceError

__all__ = ["gguf_tokenizer_info", "sentencepiece_proto_from_gguf"]

# GGUF token types; the same numbers as sentencepiece's ModelProto.SentencePiece.Type.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_SPACE = "\u2581"  # SentencePiece's escaped space, "▁"
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _reader(reader_or_path: Any):
    """A ``gguf.GGUFReader`` for a path, or the reader given."""
    if isinstance(reader_or_path, (str, os.PathLike)):
        from gemma_panel.models.gguf_reader import read_gguf

        path = os.fspath(reader_or_path)
        if not os.path.isfile(path):
            raise ModelSourceError(f"GGUF file not found: {path}. Check the path.")
        return read_gguf(path)
    if not hasattr(reader_or_path, "fields"):
        raise TypeError(f"expected a GGUF path or gguf.GGUFReader, got {type(reader_or_path)!r}")
    return reader_or_path


def _field(reader, key: str, default: Any = None) -> Any:
    """The Python value of metadata field ``key``, or ``default`` when the file lacks it."""
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _check_sentencepiece(reader) -> str:
    """The tokenizer model name, after checking that it is SentencePiece ("llama")."""
    model = _field(reader, "tokenizer.ggml.model")
    if model is None or "tokenizer.ggml.tokens" not in reader.fields:
        raise ModelSourceError(
            "This GGUF file has no tokenizer (no tokenizer.ggml.model / tokenizer.ggml.tokens). "
            "Use a GGUF exported with its vocabulary, or load the model's own tokenizer "
            "(a KerasHub preset or the Hugging Face tokenizer files)."
        )
    if model != "llama":
        raise ModelSourceError(
            f"This GGUF file's tokenizer is {model!r} (tokenizer.ggml.model), not a SentencePiece "
            "tokenizer ('llama'), so no SentencePiece model can be built from it. Load the "
            "model's own tokenizer instead (a KerasHub preset or the Hugging Face tokenizer files)."
        )
    return model


def gguf_tokenizer_info(reader_or_path: Any) -> dict:
    """What a caller needs besides the pieces: vocabulary size, special ids and flags.

    Returns a dict with ``model`` ("llama"), ``vocab_size``, ``bos_id``, ``eos_id``, ``unk_id``,
    ``pad_id`` (``None`` when the file names none), ``add_bos`` / ``add_eos`` (what llama.cpp
    does when encoding; llama.cpp adds BOS for SentencePiece files that do not say), and
    ``add_space_prefix`` (whether a space is put before the text, as SentencePiece's dummy
    prefix), ``remove_extra_whitespaces`` (whether runs of spaces are collapsed first; Gemma:
    no), ``chat_template`` (a Jinja string or ``None``), and ``architecture``.
    Raises ``ModelSourceError`` (a ``ValueError``) if the tokenizer is not SentencePiece.
    """
    reader = _reader(reader_or_path)
    model = _check_sentencepiece(reader)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    unk = _field(reader, "tokenizer.ggml.unknown_token_id")
    if unk is None and "<unk>" in tokens:
        unk = tokens.index("<unk>")
    return {
        "model": model,
        "architecture": _field(reader, "general.architecture"),
        "vocab_size": len(tokens),
        "bos_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_id": _field(reader, "tokenizer.ggml.eos_token_id"),
        "unk_id": unk,
        "pad_id": _field(reader, "tokenizer.ggml.padding_token_id"),
        "add_bos": bool(_field(reader, "tokenizer.ggml.add_bos_token", True)),
        "add_eos": bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
        "add_space_prefix": bool(_field(reader, "tokenizer.ggml.add_space_prefix", True)),
        "remove_extra_whitespaces": bool(
            _field(reader, "tokenizer.ggml.remove_extra_whitespaces", False)
        ),
        "chat_template": _field(reader, "tokenizer.chat_template"),
    }


def _piece_types(types: list, info: dict) -> list:
    """SentencePiece types for the GGUF pieces, undoing llama.cpp's relabelling (module doc)."""
    keep_control = {info["bos_id"], info["eos_id"], info["pad_id"]} - {None}
    unk_id = info["unk_id"]
    out = []
    for i, kind in enumerate(types):
        if i == unk_id:
            kind = UNKNOWN
        elif kind == UNKNOWN:  # a second unknown piece cannot be loaded; it never matches text
            kind = CONTROL
        elif kind == CONTROL and i not in keep_control:
            kind = USER_DEFINED
        elif kind not in (NORMAL, USER_DEFINED, UNUSED, BYTE, CONTROL):
            kind = NORMAL
        out.append(kind)
    return out


def sentencepiece_proto_from_gguf(reader_or_path: Any) -> bytes:
    """Serialized SentencePiece ``ModelProto`` bytes for the GGUF file's tokenizer.

    ``reader_or_path`` is a path to a ``.gguf`` file or an open ``gguf.GGUFReader`` (opening
    the 270M Gemma 3 file takes ~10 s, so pass the reader if you already have one).

    The result loads in ``sentencepiece.SentencePieceProcessor(model_proto=...)`` and in
    ``keras_hub.models.Gemma3Tokenizer(proto=...)``. It is a BPE model with byte fallback,
    identity normalization and escaped whitespace; a dummy prefix and extra-whitespace removal
    only if the file asks for them (``tokenizer.ggml.add_space_prefix`` /
    ``remove_extra_whitespaces``; Gemma: neither).
    Encoding adds no BOS; add ``info["bos_id"]`` yourself (KerasHub's preprocessors do).

    Raises ``ModelSourceError`` (a ``ValueError``) if the tokenizer is not SentencePiece or
    its vocabulary cannot make a valid SentencePiece model.
    """
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    reader = _reader(reader_or_path)
    info = gguf_tokenizer_info(reader)
    tokens, scores, types = _vocabulary(reader, info)
    kinds, byte_fallback = _byte_fallback(_piece_types(types, info), tokens)
    tokens = _respelled_spaces(tokens, kinds)

    proto = sp_pb2.ModelProto()
    for t, k, s in zip(tokens, kinds, scores):
        piece = proto.pieces.add()
        piece.piece = t
        piece.type = k
        piece.score = float(s) if k in (NORMAL, UNUSED) else 0.0
    _fill_trainer_spec(proto.trainer_spec, tokens, kinds, info, byte_fallback)
    _fill_normalizer_spec(proto.normalizer_spec, reader, info)

    data = proto.SerializeToString()
    _check_loads(data)
    return data


def _vocabulary(reader, info: dict) -> tuple[list, list, list]:
    """(pieces, scores, GGUF types), checked to agree and to name an unknown piece."""
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    n = len(tokens)
    scores = _field(reader, "tokenizer.ggml.scores") or [0.0] * n
    types = _field(reader, "tokenizer.ggml.token_type") or [NORMAL] * n
    if len(scores) != n or len(types) != n:
        raise ModelSourceError(
            f"This GGUF file's tokenizer is inconsistent: {n} tokens, {len(scores)} scores, "
            f"{len(types)} token types. Re-export the GGUF or use the model's own tokenizer."
        )
    if info["unk_id"] is None or not 0 <= info["unk_id"] < n:
        raise ModelSourceError(
            "This GGUF file names no unknown token (tokenizer.ggml.unknown_token_id), which a "
            "SentencePiece model needs. Use the model's own tokenizer instead."
        )
    return tokens, scores, types


def _byte_fallback(kinds: list, tokens: list) -> tuple[list, bool]:
    """(types, byte fallback on): on with all 256 byte pieces, else they become user-defined."""
    byte_values = {
        int(m.group(1), 16)
        for t, k in zip(tokens, kinds)
        if k == BYTE and (m := _BYTE_PIECE.match(t))
    }
    byte_fallback = len(byte_values) == 256
    if not byte_fallback:  # partial byte sets cannot be loaded with byte_fallback off
        kinds = [USER_DEFINED if k == BYTE else k for k in kinds]
    return kinds, byte_fallback


def _respelled_spaces(tokens: list, kinds: list) -> list:
    """User-defined pieces were stored with " " for "▁"; respell unless that collides."""
    tokens = list(tokens)
    seen = set(tokens)
    for i, (t, k) in enumerate(zip(tokens, kinds)):
        if k == USER_DEFINED and " " in t:
            respelled = t.replace(" ", _SPACE)
            if respelled not in seen:
                tokens[i] = respelled
                seen.add(respelled)
    return tokens


def _fill_trainer_spec(ts, tokens: list, kinds: list, info: dict, byte_fallback: bool) -> None:
    """BPE over the pieces; the unknown piece, and bos/eos/pad where they are CONTROL."""
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    n = len(tokens)
    ts.model_type = sp_pb2.TrainerSpec.BPE
    ts.vocab_size = n
    ts.byte_fallback = byte_fallback
    ts.unk_id = info["unk_id"]
    ts.unk_piece = tokens[info["unk_id"]]
    for name in ("bos", "eos", "pad"):
        idx = info[f"{name}_id"]
        ok = idx is not None and 0 <= idx < n and kinds[idx] == CONTROL
        setattr(ts, f"{name}_id", idx if ok else -1)
        if ok:
            setattr(ts, f"{name}_piece", tokens[idx])


def _fill_normalizer_spec(ns, reader, info: dict) -> None:
    """Identity normalization with escaped whitespace; prefix and collapsing as the file says."""
    ns.name = "identity"
    ns.add_dummy_prefix = info["add_space_prefix"]
    ns.escape_whitespaces = True
    ns.remove_extra_whitespaces = info["remove_extra_whitespaces"]
    charsmap = _field(reader, "tokenizer.ggml.precompiled_charsmap")
    if charsmap:
        ns.precompiled_charsmap = bytes(int(b) & 0xFF for b in charsmap)


def _check_loads(data: bytes) -> None:
    """Raise ``ModelSourceError`` if sentencepiece refuses the model (duplicate pieces, ...)."""
    import sentencepiece

    try:
        sentencepiece.SentencePieceProcessor(model_proto=data)
    except (RuntimeError, OSError) as err:
        raise ModelSourceError(
            f"The vocabulary in this GGUF file does not make a valid SentencePiece model ({err}). "
            "Use the model's own tokenizer instead (a KerasHub preset or Hugging Face files)."
        ) from err
