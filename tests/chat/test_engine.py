"""The chat engine on a tiny tuned run: both sides stream, differ, and match ``generate``.

The tiny random model repeats its last token under greedy decoding whatever its LoRA says
(its input embedding dominates its residual stream: that token's logit is ~20 above the
rest), so the answers that must differ are sampled at temperature 10: with the same seed
both sides draw the same random numbers, and only the models' logits can make their answers
differ.
"""

from __future__ import annotations

import pytest

from gemma_panel.chat import ChatEngine, ChatFormat, ModelPair
from gemma_panel.export.inventory import Checkpoints, run_checkpoints
from gemma_panel.models.generation import SamplingOptions, StreamingGenerator
from tests.chat.tiny_run import STEP

SAMPLED = {"greedy": False, "temperature": 10.0, "seed": 1, "max_new_tokens": 40}
QUESTION = [["user", "How many grams are in a kilogram?"]]


def test_the_prompt_is_the_familys_chat_format_with_every_turn():
    turns = [("user", "Hi"), ("model", "Hello."), ("user", "And 2 km?")]
    assert ChatFormat().prompt(turns, "Be brief.") == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello."
        "<end_of_turn>\n<start_of_turn>user\nAnd 2 km?<end_of_turn>\n<start_of_turn>model\n")
    gemma4 = ChatFormat({"family": "gemma4"})
    assert gemma4.system_role and not ChatFormat().system_role
    assert gemma4.prompt(turns, "Be brief.") == (
        "<|turn>system\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\nHello.<turn|>\n"
        "<|turn>user\nAnd 2 km?<turn|>\n<|turn>model\n")
    with pytest.raises(ValueError, match="ends with the user"):
        ChatFormat().prompt(turns[:2])


def _answers(engine: ChatEngine, events: list[dict]) -> dict[str, str]:
    while engine.busy:
        engine.step()
    return {side: "".join(e["text"] for e in events if e.get("side") == side
                          and e["event"] == "piece") for side in ("base", "tuned")}


@pytest.fixture(scope="module")
def pair(tuned_run):
    return ModelPair(tuned_run, STEP)


def test_base_and_tuned_answers_differ_and_each_is_its_models_generate(pair, tuned_run):
    from gemma_panel.export.source import load_run_model
    from gemma_panel.models import load_model

    events: list[dict] = []
    engine = ChatEngine(events.append, load=lambda run_dir, step: pair)
    engine.submit({"id": "a", "run_dir": str(tuned_run), "step": STEP, "options": SAMPLED,
                   "conversations": {"base": QUESTION, "tuned": QUESTION}})
    answers = _answers(engine, events)
    assert answers["base"] and answers["tuned"] and answers["base"] != answers["tuned"]
    kinds = [e["event"] for e in events]
    assert kinds.count("piece") > 4 and kinds[-1] == "done"
    # Both sides streamed together: the base side's first piece came before the tuned
    # side's last one.
    pieces = [e["side"] for e in events if e["event"] == "piece"]
    assert pieces.index("base") < len(pieces) - 1 - pieces[::-1].index("tuned")

    prompt = pair.format.prompt([tuple(t) for t in QUESTION])
    tuned = StreamingGenerator(load_run_model(tuned_run, STEP, with_validation=False).lm)
    base = StreamingGenerator(load_model(pair_recipe_source(tuned_run), progress=False))
    for options in (SamplingOptions(**SAMPLED), SamplingOptions(max_new_tokens=12)):
        events.clear()
        engine.submit({"id": "b", "run_dir": str(tuned_run), "step": STEP,
                       "options": options.__dict__,
                       "conversations": {"base": QUESTION, "tuned": QUESTION}})
        answers = _answers(engine, events)
        assert answers["tuned"] == tuned.generate_many([prompt], options)[0]
        assert answers["base"] == base.generate_many([prompt], options)[0]


def pair_recipe_source(run_dir) -> str:
    from gemma_panel.config import load_recipe

    return load_recipe(run_dir / "recipe.yaml").model.source


def test_a_stop_ends_both_answers_midway_and_other_requests_go_on(pair, tuned_run):
    events: list[dict] = []
    engine = ChatEngine(events.append, load=lambda run_dir, step: pair)
    long = {"greedy": True, "max_new_tokens": 500}
    for request_id in ("one", "two"):  # two browser tabs
        engine.submit({"id": request_id, "run_dir": str(tuned_run), "step": None,
                       "options": long, "conversations": {"base": QUESTION, "tuned": QUESTION}})
    for _ in range(5):
        engine.step()
    engine.stop("one")
    ends = [e for e in events if e["event"] == "end"]
    assert {(e["id"], e["side"], e["stopped"]) for e in ends} == {
        ("one", "base", True), ("one", "tuned", True)}
    assert all(0 < e["tokens"] < 20 for e in ends)
    assert [e["id"] for e in events if e["event"] == "done"] == ["one"]
    while engine.busy:
        engine.step()
    two = [e for e in events if e["id"] == "two" and e["event"] == "end"]
    assert [e["tokens"] for e in two] == [500, 500] and not any(e["stopped"] for e in two)


def test_a_run_without_that_checkpoint_is_told_in_words(pair, tuned_run):
    events: list[dict] = []
    engine = ChatEngine(events.append)
    engine.submit({"id": "x", "run_dir": str(tuned_run), "step": 99, "options": {},
                   "conversations": {"base": QUESTION, "tuned": QUESTION}})
    engine.step()
    assert events[-2]["event"] == "error" and "no checkpoint at step 99" in events[-2]["text"]
    assert events[-1] == {"id": "x", "event": "done"} and not engine.busy
    assert run_checkpoints(tuned_run) == Checkpoints((STEP,), None)


def test_a_full_fine_tune_chats_beside_its_base_loaded_apart(tmp_path, tiny_gguf):
    """Without LoRA the tuned model has no base inside it: the base is loaded beside it."""
    from gemma_panel.models import load_model
    from tests.chat.tiny_run import tiny_recipe, write_tuned_checkpoint

    recipe = tiny_recipe(tiny_gguf, "tiny-full", "lora.enabled=false")
    write_tuned_checkpoint(recipe, tmp_path / "full", scale=0.5)
    full = ModelPair(tmp_path / "full")
    assert not full.lora
    events: list[dict] = []
    engine = ChatEngine(events.append, load=lambda run_dir, step: full)
    engine.submit({"id": "f", "run_dir": str(tmp_path / "full"), "options": SAMPLED,
                   "conversations": {"base": QUESTION, "tuned": QUESTION}})
    answers = _answers(engine, events)
    assert answers["base"] != answers["tuned"]
    prompt = full.format.prompt([tuple(t) for t in QUESTION])
    base = StreamingGenerator(load_model(str(tiny_gguf), progress=False))
    assert answers["base"] == base.generate_many([prompt], SamplingOptions(**SAMPLED))[0]
