import json

import pytest

from gemma_panel.data.columns import ColumnMapping, detect_columns, parse_overrides
from gemma_panel.data.messages import Turn, normalize_messages
from gemma_panel.data.report import DatasetError


@pytest.mark.parametrize("columns, expected, task", [
    (["instruction", "input", "output"],
     {"prompt": "instruction", "input": "input", "response": "output"}, "instruction"),
    (["Question", "Answer"], {"prompt": "Question", "response": "Answer"}, "instruction"),
    (["input", "output"], {"prompt": "input", "response": "output"}, "instruction"),
    (["text", "label"], {"text": "text", "label": "label"}, "classification"),
    (["sentence", "sentiment", "id"], {"text": "sentence", "label": "sentiment"},
     "classification"),
    (["text"], {"text": "text"}, "completion"),
    (["conversations", "id"], {"messages": "conversations"}, "chat"),
    (["document", "summary"], {"prompt": "document", "response": "summary"}, "instruction"),
])
def test_detects_common_layouts(columns, expected, task):
    mapping = detect_columns(columns)
    assert mapping.as_dict() == expected
    assert mapping.task == task


def test_overrides_replace_and_disable_roles():
    mapping = detect_columns(["q", "a", "label"], {"prompt": "q", "response": "a",
                                                   "label": None})
    assert mapping == ColumnMapping(prompt="q", response="a")
    assert mapping.required == ("prompt", "response")


def test_override_with_unknown_column_suggests_the_near_one():
    with pytest.raises(DatasetError, match="Did you mean 'question'"):
        detect_columns(["question", "answer"], {"prompt": "questoin"})


def test_unrecognised_columns_are_listed_with_a_fix():
    with pytest.raises(DatasetError) as exc:
        detect_columns(["foo", "responce"])
    message = str(exc.value)
    assert "'foo', 'responce'" in message and "--column prompt=COL" in message
    assert "'responce' looks like response" in message


def test_parse_overrides():
    assert parse_overrides(["prompt=q", "label="]) == {"prompt": "q", "label": None}
    with pytest.raises(DatasetError):
        parse_overrides(["prompt"])


def test_openai_and_sharegpt_messages_normalise_the_same():
    openai = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"},
              {"role": "assistant", "content": "hello"}]
    sharegpt = [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "hi"},
                {"from": "gpt", "value": "hello"}]
    expected = [Turn("system", "Be kind."), Turn("user", "hi"), Turn("model", "hello")]
    assert normalize_messages(openai) == (expected, [])
    assert normalize_messages(sharegpt) == (expected, [])


@pytest.mark.parametrize("messages, problem", [
    ([], "empty"),
    ("hello", "expected a list"),
    ([{"role": "user", "content": "hi"}], "ends with a user turn"),
    ([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"},
      {"role": "assistant", "content": "y"}], "start with a user turn"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
      {"role": "assistant", "content": "c"}], "alternate"),
    ([{"role": "wizard", "content": "a"}], "role 'wizard'"),
    ([{"speaker": "a"}], "neither role/content nor from/value"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}], "is empty"),
    ([{"role": "user", "content": [{"type": "input_audio"}]},
      {"role": "assistant", "content": "a"}], "non-text parts"),
])
def test_bad_conversations_are_explained(messages, problem):
    _, problems = normalize_messages(messages)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("content", [
    [{"type": "text", "text": "How are "}, {"type": "text", "text": "you?"}],  # OpenAI
    [{"type": "text", "value": "How are you?"}],  # "value" for "text"
    [{"text": "How are you?"}],  # no type
    [{"type": "text", "text": {"value": "How are you?", "annotations": []}}],
    ["How are ", {"type": "input_text", "text": "you?"}],
])
def test_content_given_as_typed_parts_is_read(content):
    for messages in ([{"role": "user", "content": content},
                      {"role": "assistant", "content": [{"type": "text", "text": "Fine."}]}],
                     [{"from": "human", "value": content}, {"from": "gpt", "value": "Fine."}]):
        turns, problems = normalize_messages(messages)
        assert problems == []
        assert turns == [Turn("user", "How are you?"), Turn("model", "Fine.")]


def test_an_audio_part_is_refused_in_words_without_knock_on_problems():
    # Issue 12: image parts are read now (tests/data/test_images.py); other media are not.
    messages = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}},
                                             {"type": "text", "text": "What is it?"}]},
                {"role": "assistant", "content": "A cat."}]
    _, problems = normalize_messages(messages)
    assert len(problems) == 1 and "type 'input_audio'" in problems[0]
    assert "not supported yet" in problems[0]


@pytest.mark.parametrize("messages, named", [
    ([{"from": "human", "value": "Weather in Paris?"},
      {"from": "function_call", "value": '{"name": "weather"}'},
      {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "Sunny."}],
     "'function_call', 'observation'"),
    ([{"role": "user", "content": "Weather?"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
      {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}],
     "'tool_calls', 'tool'"),
])
def test_tool_calling_conversations_are_named_as_such(messages, named):
    _, problems = normalize_messages(messages)
    assert len(problems) == 1 and problems[0].startswith("tool-calling conversation")
    assert named in problems[0] and "remove the tool turns" in problems[0]


def test_preference_data_is_named_with_the_override_that_trains_it():
    with pytest.raises(DatasetError) as exc:
        detect_columns(["prompt", "chosen", "rejected"])
    assert exc.value.code == "preference_data"
    assert str(exc.value).startswith("preference data (columns 'chosen' and 'rejected')")
    assert "--column response=chosen" in str(exc.value)
    mapping = detect_columns(["prompt", "chosen", "rejected"], {"response": "chosen"})
    assert (mapping.task, mapping.response) == ("instruction", "chosen")
    assert detect_columns(["Chosen", "Rejected"], {"messages": "Chosen"}).task == "chat"


def test_tool_and_preference_files_are_reported_for_what_they_are(tmp_path):
    from gemma_panel.data.check import check_dataset

    tools = tmp_path / "tools.jsonl"
    tools.write_text(json.dumps({"conversations": [
        {"from": "human", "value": "Weather?"}, {"from": "function_call", "value": "{}"},
        {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "Sunny."}]}) + "\n")
    report = check_dataset(tools)
    assert report.has("tool_calls") and not report.has("bad_messages")
    assert "tool-calling conversations" in report.to_text()
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    report = check_dataset(prefs)
    assert report.has("preference_data") and not report.has("unknown_columns")
    assert "preference data (chosen/rejected answers)" in report.to_text()
