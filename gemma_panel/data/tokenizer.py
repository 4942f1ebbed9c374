"""The few things data preparation needs from a tokenizer, and adapters to real ones.

`TextTokenizer` is a protocol, so tests can use a tiny SentencePiece model and the app
the model's own KerasHub tokenizer, through the same code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from gemma_panel.data.report import DatasetError

START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
# Gemma 4's turn markers; a vocabulary that has them is a Gemma 4 tokenizer.
GEMMA4_TURN_MARKERS = ("<|turn>", "<turn|>")


def turn_markers(has_piece) -> tuple[str, str]:
    """The (start, end) turn markers of a vocabulary: Gemma 4's where it has them."""
    return GEMMA4_TURN_MARKERS if has_piece(GEMMA4_TURN_MARKERS[0]) else (START_OF_TURN,
                                                                          END_OF_TURN)


@runtime_checkable
class TextTokenizer(Protocol):
    """What templates and token statistics use.

    Attributes:
        bos_id: prepended to every sequence (None: the model takes none).
        eos_id: ends a completion (plain text) example.
        pad_id: fills batches.
        start_of_turn_id, end_of_turn_id: the turn markers (``<start_of_turn>``/
            ``<end_of_turn>``, Gemma 4's ``<|turn>``/``<turn|>``); a chat target ends with
            `end_of_turn_id` so the tuned model learns to stop.
    """

    bos_id: int | None
    eos_id: int
    pad_id: int
    start_of_turn_id: int
    end_of_turn_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def id_to_piece(self, token_id: int) -> str: ...


class SentencePieceTokenizer:
    """A `TextTokenizer` over a `sentencepiece.SentencePieceProcessor`.

    Args:
        model: a processor, a path to a ``tokenizer.model`` file, or its bytes.

    Example:

    ```python
    tok = SentencePieceTokenizer("tokenizer.model")
    tok.encode("<start_of_turn>user\\nHi<end_of_turn>")
    ```
    """

    def __init__(self, model: Any):
        import sentencepiece

        if isinstance(model, sentencepiece.SentencePieceProcessor):
            self.processor = model
        elif isinstance(model, (bytes, bytearray)):
            self.processor = sentencepiece.SentencePieceProcessor(model_proto=bytes(model))
        else:
            self.processor = sentencepiece.SentencePieceProcessor(model_file=os.fspath(model))
        sp = self.processor
        self.bos_id = sp.bos_id() if sp.bos_id() >= 0 else None
        self.eos_id = sp.eos_id()
        self.pad_id = max(sp.pad_id(), 0)
        self.turn_pieces = turn_markers(lambda p: sp.piece_to_id(p) != sp.unk_id())
        self.start_of_turn_id, self.end_of_turn_id = map(self._special, self.turn_pieces)
        check_turn_tokens(self)

    def _special(self, piece: str) -> int:
        token_id = self.processor.piece_to_id(piece)
        if token_id == self.processor.unk_id():
            raise DatasetError(_no_turn_token(piece))
        return token_id

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text, out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        return self.processor.decode(list(ids))

    def id_to_piece(self, token_id: int) -> str:
        return self.processor.id_to_piece(int(token_id))

    @property
    def vocabulary_size(self) -> int:
        return self.processor.get_piece_size()


class KerasHubTokenizer:
    """A `TextTokenizer` over a KerasHub tokenizer, e.g. `keras_hub.models.Gemma3Tokenizer`.

    Example:

    ```python
    tok = KerasHubTokenizer(causal_lm.preprocessor.tokenizer)
    ```
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.bos_id = getattr(tokenizer, "start_token_id", None)
        self.eos_id = tokenizer.end_token_id
        self.pad_id = getattr(tokenizer, "pad_token_id", 0)
        self.turn_pieces = turn_markers(self._has)
        self.start_of_turn_id, self.end_of_turn_id = map(self._special, self.turn_pieces)
        check_turn_tokens(self)

    def _has(self, piece: str) -> bool:
        """Whether the vocabulary has `piece` (KerasHub answers unknown pieces with unk's id)."""
        try:
            return str(self.tokenizer.id_to_token(int(self.tokenizer.token_to_id(piece)))) == piece
        except (KeyError, ValueError, IndexError):
            return False

    def _special(self, piece: str) -> int:
        try:
            return int(self.tokenizer.token_to_id(piece))
        except (KeyError, ValueError) as exc:
            raise DatasetError(_no_turn_token(piece)) from exc

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.tokenize(text)
        ids = ids.numpy() if hasattr(ids, "numpy") else ids
        return [int(i) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        out = self.tokenizer.detokenize(list(ids))
        out = out.numpy() if hasattr(out, "numpy") else out
        return out.decode("utf-8") if isinstance(out, bytes) else str(out)

    def id_to_piece(self, token_id: int) -> str:
        return str(self.tokenizer.id_to_token(int(token_id)))


def check_turn_tokens(tokenizer: TextTokenizer) -> None:
    """Raise unless the turn markers encode to their single special ids.

    A tokenizer that splits "<end_of_turn>" into pieces would train the model on text that
    merely looks like the marker, and the tuned model would never stop.
    """
    start, end = getattr(tokenizer, "turn_pieces", (START_OF_TURN, END_OF_TURN))
    for piece, token_id in ((start, tokenizer.start_of_turn_id),
                            (end, tokenizer.end_of_turn_id)):
        ids = tokenizer.encode(piece)
        if ids != [token_id]:
            raise DatasetError(f"the tokenizer encodes {piece} as {ids}, not as the single "
                               f"token {token_id}: it does not treat Gemma's turn markers as "
                               "special tokens, so chat templates would not work.")


def _no_turn_token(piece: str) -> str:
    return (f"the tokenizer has no {piece} token: it is not a Gemma 2/3 tokenizer. Chat "
            "templates need it; use the completion template, or the model's own tokenizer.")
