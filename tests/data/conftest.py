"""A tiny Gemma-like SentencePiece tokenizer, trained in a second, shared by the tests."""

import io

import pytest

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Convert 5 kilometres to miles. 5 kilometres is about 3.1 miles.",
    "Classify the text. Answer with one of: positive, negative.",
    "I loved this film, it was wonderful. This was a terrible waste of time.",
    "user model answer question text label response prompt",
] * 20


@pytest.fixture(scope="session")
def sp_model_proto() -> bytes:
    """A SentencePiece model with Gemma's special tokens: ids pad 0, eos 1, bos 2, unk 3."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=out,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        # Gemma's tokenizer has no dummy prefix and keeps whitespace as it is.
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        minloglevel=2,
    )
    return out.getvalue()


@pytest.fixture(scope="session")
def tokenizer(sp_model_proto):
    from gemma_panel.data.tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer(sp_model_proto)
