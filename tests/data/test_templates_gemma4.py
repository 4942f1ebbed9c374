"""Gemma 4's chat format, token for token, and its loss mask; Gemma 3's format stays as it was.

The expected strings are Gemma 4's published prompt format (the model card's "Gemma 4
prompt formatting": ``<|turn>system\\n...<turn|>\\n<|turn>user\\n...<turn|>\\n``), written as
the published chat template renders a conversation: ``<bos>`` (added by the tokenizer, not
the template), every turn closed by ``<turn|>\\n``, contents stripped. Set
GEMMA_PANEL_GEMMA4_CHAT_TEMPLATE to a ``chat_template.jinja`` from a Gemma 4 checkpoint to
also compare against that file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from gemma_panel.data.example import Example
from gemma_panel.data.messages import Turn
from gemma_panel.data.templates import (
    ClassificationTemplate,
    Gemma4ChatTemplate,
    GemmaChatTemplate,
    family_mismatch,
    render_text,
    resolve_template,
    template_for_task,
)
from gemma_panel.data.tokenized import tokenize_example
from gemma_panel.data.tokenizer import SentencePieceTokenizer

CONVERSATION = [Turn("system", "You are a helpful assistant."), Turn("user", "Hello."),
                Turn("model", "Hi! How can I help?"), Turn("user", "What is 2+2? "),
                Turn("model", "  4\n")]
PUBLISHED = ("<bos><|turn>system\nYou are a helpful assistant.<turn|>\n"
             "<|turn>user\nHello.<turn|>\n"
             "<|turn>model\nHi! How can I help?<turn|>\n"
             "<|turn>user\nWhat is 2+2?<turn|>\n"
             "<|turn>model\n4<turn|>\n")


def as_published(template, turns) -> str:
    """Our segments as the published template's whole-conversation string."""
    return "<bos>" + render_text(template.segments(Example(messages=turns))) + "\n"


def test_system_and_multi_turn_match_the_published_format():
    assert as_published(Gemma4ChatTemplate(), CONVERSATION) == PUBLISHED


def test_no_system_turn_without_a_system_message():
    turns = CONVERSATION[1:3]
    assert as_published(Gemma4ChatTemplate(), turns) == (
        "<bos><|turn>user\nHello.<turn|>\n<|turn>model\nHi! How can I help?<turn|>\n")
    with_default = Gemma4ChatTemplate(system_prompt="Be brief.")
    assert as_published(with_default, turns).startswith(
        "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHello.")


def test_thinking_is_off_by_default_and_on_opens_the_system_turn():
    assert "<|think|>" not in as_published(Gemma4ChatTemplate(), CONVERSATION)
    thinking = as_published(Gemma4ChatTemplate(thinking=True), CONVERSATION)
    assert thinking == PUBLISHED.replace("system\n", "system\n<|think|>\n", 1)
    alone = as_published(Gemma4ChatTemplate(thinking=True), CONVERSATION[1:3])
    assert alone.startswith("<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\n")


def test_empty_thought_channel_opens_model_turns_untrained():
    segments = Gemma4ChatTemplate(empty_thought=True).segments(Example(messages=CONVERSATION))
    prompts = [s.text for s in segments if not s.trained]
    assert all(p.endswith("<|turn>model\n<|channel>thought\n<channel|>") for p in prompts)
    assert [s.text for s in segments if s.trained] == ["Hi! How can I help?", "4"]
    thinking = Gemma4ChatTemplate(empty_thought=True, thinking=True)
    assert "<|channel>" not in render_text(thinking.segments(Example(messages=CONVERSATION)))


def test_gemma3_keeps_folding_the_system_message_into_the_first_user_turn():
    text = render_text(GemmaChatTemplate().segments(Example(messages=CONVERSATION)))
    assert text.startswith("<start_of_turn>user\nYou are a helpful assistant.\n\nHello."
                           "<end_of_turn>\n<start_of_turn>model\nHi! How can I help?")


@pytest.fixture(scope="module")
def gemma4_tokenizer():
    """A tiny SentencePiece model whose turn markers are Gemma 4's."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["You are a helpful assistant. Hello. What is 2+2? 4"] * 40),
        model_writer=out, vocab_size=320, model_type="bpe", byte_fallback=True,
        add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        user_defined_symbols=["<|turn>", "<turn|>", "<|think|>", "<|channel>", "<channel|>"],
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", minloglevel=2)
    return SentencePieceTokenizer(out.getvalue())


def test_loss_mask_is_the_answers_and_their_turn_ends(gemma4_tokenizer):
    tok = gemma4_tokenizer
    assert tok.end_of_turn_id == tok.encode("<turn|>")[0]
    tokenized = tokenize_example(Example(messages=CONVERSATION), Gemma4ChatTemplate(), tok)
    eot = tok.end_of_turn_id
    assert tokenized.trained_ids == tok.encode("Hi! How can I help?") + [eot] + tok.encode("4") + [eot]
    assert tok.decode(tokenized.input_ids[1:]) == PUBLISHED[len("<bos>"):-1]
    first = tokenized.loss_mask.index(1)
    assert tok.decode(tokenized.input_ids[1:first]).endswith("<|turn>model\n")


def test_family_picks_the_format():
    assert isinstance(template_for_task("chat", family="gemma4"), Gemma4ChatTemplate)
    assert isinstance(template_for_task("chat", family="gemma3n"), GemmaChatTemplate)
    assert isinstance(template_for_task("chat"), GemmaChatTemplate)
    classify = template_for_task("classification", ["a", "b"], family="gemma4")
    text = render_text(classify.segments(Example(text="x", label="a")))
    assert text.startswith("<|turn>user\n") and text.endswith("<|turn>model\na<turn|>")
    assert resolve_template("auto", "chat", family="gemma4", thinking=True).thinking
    assert isinstance(resolve_template("gemma4", "chat"), Gemma4ChatTemplate)


def test_registry_entries_carry_their_chat_format():
    from gemma_panel.models.registry import MODELS

    big = resolve_template("auto", "chat", **MODELS["gemma4-31b"].template_options())
    small = resolve_template("auto", "chat", **MODELS["gemma4-e2b"].template_options())
    assert big.empty_thought and not small.empty_thought
    assert isinstance(small, Gemma4ChatTemplate)
    gemma3n = resolve_template("auto", "chat", **MODELS["gemma3n-e2b"].template_options())
    assert isinstance(gemma3n, GemmaChatTemplate)


def test_mismatch_between_template_and_family_is_said():
    assert "<|turn>" in family_mismatch(GemmaChatTemplate(), "gemma4")
    assert family_mismatch(Gemma4ChatTemplate(), "gemma3") is not None
    assert family_mismatch(Gemma4ChatTemplate(), "gemma4") is None
    assert family_mismatch(GemmaChatTemplate(), "gemma3n") is None
    assert family_mismatch(ClassificationTemplate(("a",)), "gemma4") is not None
    assert family_mismatch(template_for_task("completion"), "gemma4") is None


@pytest.mark.skipif(not os.environ.get("GEMMA_PANEL_GEMMA4_CHAT_TEMPLATE"),
                    reason="set GEMMA_PANEL_GEMMA4_CHAT_TEMPLATE to a Gemma 4 chat_template.jinja")
def test_matches_a_checkpoints_chat_template():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = Path(os.environ["GEMMA_PANEL_GEMMA4_CHAT_TEMPLATE"]).read_text()
    jinja = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    messages = [{"role": {"model": "assistant"}.get(t.role, t.role), "content": t.content}
                for t in CONVERSATION]
    for thinking in (False, True):
        reference = jinja.render(messages=messages, bos_token="<bos>", enable_thinking=thinking)
        assert as_published(Gemma4ChatTemplate(thinking=thinking), CONVERSATION) == reference
