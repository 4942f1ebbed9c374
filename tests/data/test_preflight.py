"""`preflight`: the recipe's data checked by the same preparation its run makes."""

from __future__ import annotations

import json

import pytest

from gemma_panel.config import load_recipe
from gemma_panel.data import DatasetError, prepare_dataset
from gemma_panel.data.preflight import preflight, prepare_recipe_data
from tests.ui.conftest import EXAMPLES, TOPICS


def test_the_wrong_template_fails_preparation_and_names_the_fix():
    # The quickstart's chat template on a classification file: every row lacks a response.
    with pytest.raises(DatasetError) as caught:
        prepare_dataset(TOPICS, template="gemma")
    assert caught.value.report.has("template_mismatch")
    assert caught.value.report.rows_usable == 0
    recipe = load_recipe("recipes/quickstart.yaml", [f"data.train_path={TOPICS}"])
    verdict = preflight(recipe)
    assert not verdict.ok and not verdict.ready
    assert verdict.fix == {"data.template": "classification"}
    assert "topics.csv is classification data" in verdict.message
    assert "set data.template to classification" in verdict.message
    fixed = load_recipe("recipes/quickstart.yaml", [f"data.train_path={TOPICS}",
                                                    "data.template=classification"])
    again = preflight(fixed)
    assert again.ok and again.template == "classification" and again.task == "classification"
    assert again.train_examples + again.validation_examples == 160


def test_a_named_template_is_used_as_named_not_swapped_for_the_tasks():
    # Before, the worker turned `classification` into "the task's default" silently.
    unit = EXAMPLES / "instruction" / "unit_conversions.jsonl"
    recipe = load_recipe(None, [f"data.train_path={unit}", "data.template=classification"])
    verdict = preflight(recipe)
    assert not verdict.ok and verdict.fix == {"data.template": "gemma"}
    with pytest.raises(DatasetError, match="needs a label"):
        prepare_recipe_data(recipe)


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.rglob("*")
                                        if p.suffix in (".csv", ".jsonl", ".txt")))
def test_every_shipped_example_passes_with_the_template_auto_picks(path):
    recipe = load_recipe(None, [f"data.train_path={path}", "data.template=auto",
                                "data.text_mode=paragraph"])
    verdict = preflight(recipe)
    assert verdict.ok, verdict.message
    assert preflight(load_recipe(None, [f"data.train_path={path}",
                                        f"data.template={verdict.template}",
                                        "data.text_mode=paragraph"])).ok


def _lengths(tokenizer, prompt: str, response: str) -> tuple[int, int]:
    """(prompt tokens, all tokens) of one example in Gemma's chat format."""
    from gemma_panel.data.example import Example
    from gemma_panel.data.templates import GemmaChatTemplate
    from gemma_panel.data.tokenized import tokenize_example

    example = Example(prompt=prompt, response=response, row=1)
    tokenized = tokenize_example(example, GemmaChatTemplate(), tokenizer)
    return tokenized.prompt_tokens, tokenized.total_tokens


def test_length_messages_name_the_sequence_length_the_user_set(tmp_path, tokenizer):
    # Before, preflight told the data layer sequence_length + 1 (the shifted target), so a
    # user who set 16 read "at least the sequence length 17".
    prompt, response = "What is the capital of France? " * 3, "Paris. " * 3
    p, total = _lengths(tokenizer, prompt, response)
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({"prompt": prompt if i == 0 else f"q{i}",
                                        "response": response if i == 0 else "ok"}) + "\n"
                            for i in range(10)))
    set_by_user = p - 1  # the prompt alone fills the sequence: nothing left to train on
    recipe = load_recipe(None, [f"data.train_path={data}", "data.template=gemma",
                                f"data.sequence_length={set_by_user}"])
    verdict = preflight(recipe, tokenizer)
    assert not verdict.ok
    assert (f"the prompt alone is {p} tokens, more than the sequence length {set_by_user}:"
            in verdict.message), verdict.message
    assert f"sequence length {set_by_user + 1}" not in verdict.message
    # One more position and the prompt's last token predicts the first response token:
    # the run trains on it, and preflight, the Data tab's check and the run agree.
    fits = load_recipe(None, [f"data.train_path={data}", "data.template=gemma",
                              f"data.sequence_length={p}"])
    assert preflight(fits, tokenizer).ok
    from gemma_panel.data.check import check_dataset
    from gemma_panel.data.templates import GemmaChatTemplate

    report = check_dataset(data, template=GemmaChatTemplate(), tokenizer=tokenizer,
                           sequence_length=p)
    assert report.ok and not report.has("no_target")
    cut, = report.examples["overlong"]
    assert cut.message == (f"{total} tokens, more than a sequence of length {p} takes: the "
                           f"last {total - p - 1} (including the end-of-turn token) are cut")
    assert report.token_stats["sequence_length"] == p
