"""Token ids and the loss mask for one example, and a way to show which tokens train.

Lengths here are the user's ``data.sequence_length``: the positions of a training sequence.
Such a sequence holds ``tokens_per_sequence(length)`` tokens of an example (its inputs and,
shifted by one, their next-token targets); that +1 is made in `tokens_per_sequence` only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from gemma_panel.data.example import Example
from gemma_panel.data.templates import Template
from gemma_panel.data.tokenizer import TextTokenizer


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids with a 0/1 loss mask of the same length.

    Args:
        input_ids: the tokens, cut to what a sequence holds when a length was given.
        loss_mask: 1 where the model is trained to predict the token.
        prompt_tokens: untrained tokens before truncation (BOS included).
        target_tokens: trained tokens before truncation (stop tokens included).
        truncated: the example was longer than a sequence holds and was cut.
    """

    input_ids: list[int]
    loss_mask: list[int]
    prompt_tokens: int
    target_tokens: int
    truncated: bool = False

    @property
    def total_tokens(self) -> int:
        """The length before truncation."""
        return self.prompt_tokens + self.target_tokens

    @property
    def trained_ids(self) -> list[int]:
        return [t for t, m in zip(self.input_ids, self.loss_mask) if m]


def tokens_per_sequence(sequence_length: int) -> int:
    """How many tokens of an example a training sequence of ``sequence_length`` positions
    holds: its inputs and the next-token target of the last one."""
    return sequence_length + 1


def length_problems(tokenized: TokenizedExample, sequence_length: int | None
                    ) -> list[tuple[str, str, str]]:
    """``(severity, code, message)`` of an example too long for ``sequence_length``: its
    prompt leaves no response token to train on (error), or its end is cut (warning)."""
    if sequence_length is None:
        return []
    held = tokens_per_sequence(sequence_length)
    if tokenized.prompt_tokens >= held:
        return [("error", "no_target", (
            f"the prompt alone is {tokenized.prompt_tokens} tokens, more than the sequence "
            f"length {sequence_length}: no response token is left to train on"))]
    if tokenized.truncated:
        cut = tokenized.total_tokens - held
        return [("warning", "overlong", (
            f"{tokenized.total_tokens} tokens, more than a sequence of length "
            f"{sequence_length} takes: the last {cut} (including the end-of-turn token) "
            "are cut"))]
    return []


def tokenize_example(
    example: Example,
    template: Template,
    tokenizer: TextTokenizer,
    sequence_length: int | None = None,
    add_bos: bool = True,
) -> TokenizedExample:
    """Render `example` with `template` and tokenize it, one segment at a time.

    Segments are encoded separately, as at inference time the prompt is encoded on its
    own and the model continues from its last token; the stop token is appended as an
    id. Longer examples are cut at the end to what a sequence of `sequence_length`
    positions holds (`tokens_per_sequence`).
    """
    ids: list[int] = []
    mask: list[int] = []
    if add_bos and tokenizer.bos_id is not None:
        ids.append(tokenizer.bos_id)
        mask.append(0)
    stop_ids = {"end_of_turn": tokenizer.end_of_turn_id, "eos": tokenizer.eos_id}
    for segment in template.segments(example):
        piece = tokenizer.encode(segment.text) if segment.text else []
        if segment.stop:
            piece.append(stop_ids[segment.stop])
        ids.extend(piece)
        mask.extend([int(segment.trained)] * len(piece))
    trained = sum(mask)
    prompt = len(ids) - trained
    held = None if sequence_length is None else tokens_per_sequence(sequence_length)
    truncated = held is not None and len(ids) > held
    if truncated:
        ids, mask = ids[:held], mask[:held]
    return TokenizedExample(ids, mask, prompt, trained, truncated)


def loss_mask_pieces(tokenized: TokenizedExample, tokenizer: TextTokenizer
                     ) -> list[tuple[str, bool]]:
    """(token text, trained) for every token: what the dashboard colours."""
    return [(_readable(tokenizer.id_to_piece(t)), bool(m))
            for t, m in zip(tokenized.input_ids, tokenized.loss_mask)]


def show_loss_mask(tokenized: TokenizedExample, tokenizer: TextTokenizer) -> str:
    """The example as text with the trained spans in ``[[ ]]``, for the terminal."""
    out: list[str] = []
    for trained, run in itertools.groupby(zip(tokenized.input_ids, tokenized.loss_mask),
                                          key=lambda pair: pair[1]):
        text = tokenizer.decode([t for t, _ in run])
        out.append(f"[[{text}]]" if trained else text)
    return "".join(out)


def _readable(piece: str) -> str:
    """SentencePiece's byte pieces (<0x0A>) as the character, and its space mark as a space."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        code = int(piece[3:5], 16)
        return chr(code) if code < 0x80 else piece
    return piece.replace("\u2581", " ")
