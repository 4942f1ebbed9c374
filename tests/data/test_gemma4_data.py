"""Gemma 4 data: the model's family picks the chat format, ``data.thinking``, tool-call data."""

from __future__ import annotations

import json

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.data import DatasetError, ReadOptions, check_dataset, prepare_dataset
from gemma_panel.data.preflight import model_template_options, preflight, prepare_recipe_data
from gemma_panel.data.templates import render_text
from gemma_panel.ui.data_checks import check_file
from tests.data.test_templates_gemma4 import TOOL_CHAT
from tests.ui.conftest import UNIT_CONVERSIONS

GEMMA4 = {"family": "gemma4", "empty_thought": False}


def _recipe(*overrides: str):
    return load_recipe(None, [f"data.train_path={UNIT_CONVERSIONS}", *overrides])


def test_the_recipe_resolves_the_models_chat_format_and_thinking():
    prepared = prepare_recipe_data(_recipe("model.source=gemma4-e2b"))
    assert prepared.template.name == "gemma4" and not prepared.template.thinking
    assert not prepared.report.has("template_family")
    text = render_text(prepared.template.segments(prepared.train[0]))
    assert text.startswith("<|turn>user\n") and text.endswith("<turn|>")
    thinking = prepare_recipe_data(_recipe("model.source=gemma4-e2b", "data.thinking=true"))
    assert thinking.template.thinking
    assert render_text(thinking.template.segments(thinking.train[0])).startswith(
        "<|turn>system\n<|think|>")
    # Gemma 3 keeps its own format, whatever data.thinking says.
    assert prepare_recipe_data(_recipe("data.thinking=true")).template.name == "gemma"


def test_a_template_of_another_family_is_warned_about_with_the_fix():
    verdict = preflight(_recipe("model.source=gemma4-e4b", "data.template=gemma"))
    assert verdict.ok
    assert "gemma4 models were trained on <|turn>...<turn|>" in verdict.message
    assert "use template 'auto' (or 'gemma4')" in verdict.message
    assert "but" not in preflight(_recipe("model.source=gemma4-e4b")).message
    gemma3 = preflight(_recipe("data.template=gemma4"))
    assert "gemma3 models were trained on <start_of_turn>" in gemma3.message


def test_a_folders_config_names_its_family(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma4_text"}))
    assert model_template_options(str(tmp_path)) == {"family": "gemma4"}
    (tmp_path / "config.json").write_text(
        json.dumps({"class_name": "keras_hub>Gemma3Backbone"}))
    assert model_template_options(str(tmp_path)) == {"family": "gemma3"}
    assert model_template_options("gemma4-31b") == {"family": "gemma4", "empty_thought": True}
    assert model_template_options(str(tmp_path / "missing")) == {}


@pytest.fixture
def tool_file(tmp_path):
    other = json.loads(json.dumps(TOOL_CHAT))
    other[2]["tool_calls"][0]["function"]["arguments"] = '{"city": "Osaka"}'
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in [TOOL_CHAT, other] * 3))
    return path


def test_tool_call_data_is_read_for_gemma4_and_kept(tool_file):
    with pytest.raises(DatasetError) as refused:
        prepare_dataset(tool_file, validation_fraction=0.0)
    assert refused.value.report.has("tool_calls")
    prepared = prepare_dataset(tool_file, validation_fraction=0.0, template_options=GEMMA4)
    assert prepared.template.name == "gemma4"
    # The two conversations differ only in a call's arguments: they are not duplicates.
    assert len(prepared.train) == 2 and prepared.report.has("duplicate")
    saved = [e.to_dict()["messages"][2] for e in prepared.train]
    assert [m["tool_calls"] for m in saved] == [
        [{"name": "get_weather", "arguments": {"units": "celsius", "city": "Tokyo"}}],
        [{"name": "get_weather", "arguments": {"city": "Osaka"}}]]
    assert prepared.train[0].to_dict()["messages"][3] == {
        "role": "tool", "content": "22 C, sunny", "name": "get_weather"}
    assert not check_dataset(tool_file, read=ReadOptions(tools=True)).n_errors


def test_the_data_tab_renders_the_models_format_and_warns(tool_file):
    out = check_file(str(UNIT_CONVERSIONS), ReadOptions(), "auto", GEMMA4)
    pieces = out["examples"][0]["pieces"]
    assert pieces[0][0].startswith("<|turn>user\n") and not pieces[0][1]
    assert pieces[-1][0].endswith("<turn|>") and pieces[-1][1]
    assert "template_family" not in out["text"]
    wrong = check_file(str(UNIT_CONVERSIONS), ReadOptions(), "gemma", GEMMA4)
    assert any(k["code"] == "template_family" for k in wrong["report"]["kinds"])
    tools = check_file(str(tool_file), ReadOptions(), "auto", GEMMA4)
    assert tools["report"]["n_errors"] == 0
    assert any("<|tool_call>call:get_weather" in p for p, _ in tools["examples"][0]["pieces"])
