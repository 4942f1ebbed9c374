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
    ([{"role": "user", "content": [{"type": "image_url"}]},
      {"role": "assistant", "content": "a"}], "non-text parts"),
])
def test_bad_conversations_are_explained(messages, problem):
    _, problems = normalize_messages(messages)
    assert any(problem in p for p in problems), problems
