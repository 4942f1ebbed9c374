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
from gemma_panel.data.gemma4_tools import format_argument
from gemma_panel.data.messages import Turn, normalize_messages
from gemma_panel.data.templates import (
    ClassificationTemplate,
    GemmaChatTemplate,
    family_mismatch,
    render_text,
    resolve_template,
    template_for_task,
)
from gemma_panel.data.templates_gemma4 import Gemma4ChatTemplate
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
        user_defined_symbols=["<|turn>", "<turn|>", "<|think|>", "<|channel>", "<channel|>",
                              "<|tool_call>", "<tool_call|>", "<|tool_response>",
                              "<tool_response|>", '<|"|>'],
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


TOOL_CHAT = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Weather in Tokyo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"units": "celsius", "city": "Tokyo"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "22 C, sunny"},
    {"role": "assistant", "content": "It is 22 C and sunny in Tokyo."},
]
CALL = ('<|tool_call>call:get_weather{city:<|"|>Tokyo<|"|>,units:<|"|>celsius<|"|>}'
        "<tool_call|><|tool_response>")
RESULT = 'response:get_weather{value:<|"|>22 C, sunny<|"|>}<tool_response|>'


def tool_example() -> Example:
    turns, problems = normalize_messages(TOOL_CHAT, tools=True)
    assert problems == []
    return Example(messages=turns)


def test_tool_calls_and_results_are_written_in_the_model_turn():
    assert as_published(Gemma4ChatTemplate(), tool_example().messages) == (
        "<bos><|turn>system\nUse tools.<turn|>\n<|turn>user\nWeather in Tokyo?<turn|>\n"
        f"<|turn>model\n{CALL}{RESULT}It is 22 C and sunny in Tokyo.<turn|>\n")
    segments = Gemma4ChatTemplate().segments(tool_example())
    assert [s.text for s in segments if s.trained] == [CALL, "It is 22 C and sunny in Tokyo."]
    assert RESULT in [s.text for s in segments if not s.trained]


def test_tool_call_loss_mask(gemma4_tokenizer):
    tok = gemma4_tokenizer
    tokenized = tokenize_example(tool_example(), Gemma4ChatTemplate(), tok)
    assert tokenized.trained_ids == (tok.encode(CALL) + tok.encode("It is 22 C and sunny in Tokyo.")
                                     + [tok.end_of_turn_id])
    assert tok.encode("<|tool_response>") == [tokenized.trained_ids[len(tok.encode(CALL)) - 1]]


def test_tool_data_is_refused_unless_asked_for_and_checked_when_read():
    assert normalize_messages(TOOL_CHAT)[1][0].startswith("tool-calling conversation")
    stray = [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"},
             {"role": "assistant", "content": "ok"}]
    assert any("must follow a model turn" in p for p in normalize_messages(stray, tools=True)[1])
    sharegpt = [{"from": "human", "value": "hi"},
                {"from": "function_call", "value": '{"name": "f", "arguments": {"a": 1}}'},
                {"from": "observation", "value": "42"}, {"from": "gpt", "value": "It is 42."}]
    turns, problems = normalize_messages(sharegpt, tools=True)
    assert problems == [] and turns[1].tool_calls[0].arguments == {"a": 1}
    assert turns[2].name == "f"


def test_gemma4_value_syntax():
    value = {"b": [True, "s", 2.5], "A": {"k": None}, "c": 3}
    assert format_argument(value, escape_keys=False) == (
        '{A:{k:None},b:[true,<|"|>s<|"|>,2.5],c:3}')
    assert format_argument({"k": "v"}) == '{<|"|>k<|"|>:<|"|>v<|"|>}'


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
    tool_messages = [dict(m) for m in TOOL_CHAT]
    tool_messages[2]["tool_calls"] = [{"id": "c1", "function": {
        "name": "get_weather", "arguments": {"units": "celsius", "city": "Tokyo"}}}]
    reference = jinja.render(messages=tool_messages, bos_token="<bos>")
    assert as_published(Gemma4ChatTemplate(), tool_example().messages) == reference
