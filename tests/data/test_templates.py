import pytest

from gemma_panel.data.example import Example
from gemma_panel.data.messages import Turn
from gemma_panel.data.report import DatasetError
from gemma_panel.data.templates import (
    ClassificationTemplate,
    CompletionTemplate,
    CustomTemplate,
    GemmaChatTemplate,
    get_template,
    render_text,
)
from gemma_panel.data.tokenized import loss_mask_pieces, show_loss_mask, tokenize_example
from gemma_panel.data.tokenizer import SentencePieceTokenizer, check_turn_tokens


def test_gemma_turn_format_text():
    example = Example(prompt="What is 2+2?", response="4")
    text = render_text(GemmaChatTemplate().segments(example))
    assert text == ("<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
                    "<start_of_turn>model\n4<end_of_turn>")


def test_trained_tokens_are_exactly_the_response_and_end_of_turn(tokenizer):
    example = Example(prompt="What is the capital of France?",
                      response="The capital of France is Paris.")
    tokenized = tokenize_example(example, GemmaChatTemplate(), tokenizer)
    assert len(tokenized.input_ids) == len(tokenized.loss_mask)
    expected = tokenizer.encode("The capital of France is Paris.") + [tokenizer.end_of_turn_id]
    assert tokenized.trained_ids == expected
    # The trained tokens are one contiguous span at the end.
    first = tokenized.loss_mask.index(1)
    assert tokenized.loss_mask[first:] == [1] * len(expected)
    assert tokenized.input_ids[0] == tokenizer.bos_id
    assert tokenized.input_ids[-1] == tokenizer.end_of_turn_id
    # The untrained part is the user turn and the model turn's opening, nothing else.
    prompt_ids = tokenized.input_ids[:first]
    assert tokenizer.decode(prompt_ids[1:]) == (
        "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
        "<start_of_turn>model\n")
    assert tokenized.prompt_tokens == first and not tokenized.truncated


def test_input_column_is_appended_to_the_prompt(tokenizer):
    example = Example(prompt="Convert to miles.", input="5 kilometres", response="3.1 miles")
    text = render_text(GemmaChatTemplate().segments(example))
    assert "user\nConvert to miles.\n\n5 kilometres<end_of_turn>" in text


def test_multi_turn_chat_trains_every_model_turn(tokenizer):
    turns = [Turn("system", "Be brief."), Turn("user", "hi"), Turn("model", "hello"),
             Turn("user", "bye"), Turn("model", "goodbye")]
    tokenized = tokenize_example(Example(messages=turns), GemmaChatTemplate(), tokenizer)
    eot = tokenizer.end_of_turn_id
    assert tokenized.trained_ids == (tokenizer.encode("hello") + [eot]
                                     + tokenizer.encode("goodbye") + [eot])
    text = render_text(GemmaChatTemplate().segments(Example(messages=turns)))
    assert text.startswith("<start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n")
    assert "hello<end_of_turn>\n<start_of_turn>user\nbye" in text


def test_completion_trains_the_whole_text_and_ends_with_eos(tokenizer):
    tokenized = tokenize_example(Example(text="the lazy dog"), CompletionTemplate(), tokenizer)
    assert tokenized.trained_ids == tokenizer.encode("the lazy dog") + [tokenizer.eos_id]
    assert tokenized.loss_mask[0] == 0  # BOS is input, never a target


def test_classification_prompt_lists_labels_and_target_is_label(tokenizer):
    template = ClassificationTemplate(("negative", "positive"))
    example = Example(text="I loved this film", label="positive")
    text = render_text(template.segments(example))
    assert "Answer with one of: negative, positive." in text
    assert "Text: I loved this film" in text
    tokenized = tokenize_example(example, template, tokenizer)
    assert tokenized.trained_ids == tokenizer.encode("positive") + [tokenizer.end_of_turn_id]


def test_custom_template_uses_any_column(tokenizer):
    template = CustomTemplate(prompt="Translate to French: {english}", response="{french}")
    assert template.fields == {"english", "french"}
    example = Example(fields={"english": "dog", "french": "chien"})
    text = render_text(template.segments(example))
    assert text.startswith("<start_of_turn>user\nTranslate to French: dog<end_of_turn>")
    assert text.endswith("model\nchien<end_of_turn>")
    with pytest.raises(DatasetError, match="french"):
        template.segments(Example(fields={"english": "cat"}, row=7))


def test_truncation_cuts_the_end_and_is_flagged(tokenizer):
    example = Example(prompt="What is the capital of France?",
                      response="The capital of France is Paris. " * 10)
    full = tokenize_example(example, GemmaChatTemplate(), tokenizer)
    # 29 positions hold 30 tokens: the inputs and the last one's next-token target.
    cut = tokenize_example(example, GemmaChatTemplate(), tokenizer, sequence_length=29)
    assert cut.truncated and len(cut.input_ids) == 30
    assert cut.input_ids == full.input_ids[:30]
    assert cut.total_tokens == full.total_tokens > 30


def test_show_loss_mask_brackets_the_trained_span(tokenizer):
    example = Example(prompt="question", response="answer")
    tokenized = tokenize_example(example, GemmaChatTemplate(), tokenizer)
    shown = show_loss_mask(tokenized, tokenizer)
    assert shown.endswith("model\n[[answer<end_of_turn>]]")
    pieces = loss_mask_pieces(tokenized, tokenizer)
    assert pieces[-1] == ("<end_of_turn>", True) and pieces[0] == ("<bos>", False)


def test_tokenizer_without_turn_tokens_is_refused():
    import io

    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["plain words only here"] * 50), model_writer=out,
        vocab_size=40, model_type="char", minloglevel=2)
    with pytest.raises(DatasetError, match="<start_of_turn>"):
        SentencePieceTokenizer(out.getvalue())


def test_turn_tokens_are_single_ids(tokenizer):
    check_turn_tokens(tokenizer)  # raises if not
    assert tokenizer.encode("<end_of_turn>") == [tokenizer.end_of_turn_id]


def test_get_template_by_name():
    assert isinstance(get_template("gemma"), GemmaChatTemplate)
    assert get_template("classification", labels=["a", "b"]).labels == ("a", "b")
    with pytest.raises(DatasetError, match="unknown template"):
        get_template("alpaca")
