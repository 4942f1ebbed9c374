"""The Chat tab's view-model without a browser: choices, read-only outputs, what each side
is asked, and the prompts saved into the Configure tab's recipe."""

from __future__ import annotations

from gemma_panel.ui.app import Studio
from gemma_panel.ui.chat_view import ChatView, conversation_html
from gemma_panel.ui.outputs import write
from tests.chat.tiny_run import STEP, tiny_recipe, write_tuned_checkpoint
from tests.ui.test_bindings import _read_only


def test_the_chat_tab_offers_runs_with_checkpoints_and_saves_its_prompts(store, tiny_gguf):
    recipe = tiny_recipe(tiny_gguf)
    run = store.create_run(recipe)
    empty = store.create_run(recipe)  # no checkpoint yet: nothing to chat with
    write_tuned_checkpoint(recipe, run.run_dir)
    studio = Studio(store)
    chat = studio.chat
    ChatView(model=chat)
    assert chat.param.run.objects == [run.id] and empty.id not in chat.param.run.objects
    assert chat.param.checkpoint.objects == ["latest", f"step {STEP}"]
    assert "no system role" in chat.system_note
    _read_only(chat, turns=[{"user": "x"}], busy=True, status="written by a view",
               system_note="x")
    chat.send()
    assert chat.status == "Write a message first." and not chat.busy

    write(chat, turns=[{"user": "2 km in m?", "base": "\n\n", "tuned": "2000 m",
                        "base_info": "", "tuned_info": "5 tokens in 0.1 s"}])
    assert chat.conversation("tuned", "And 3 km?") == [
        ["user", "2 km in m?"], ["model", "2000 m"], ["user", "And 3 km?"]]
    assert chat.conversation("base", "And 3 km?")[1] == ["model", "\n\n"]
    shown = conversation_html(chat.turns, "tuned")
    assert "2000 m" in shown and "5 tokens in 0.1 s" in shown
    chat.save_as_sample_prompts()
    assert studio.config.recipe().eval.sample_prompts == ["2 km in m?"]
    assert "eval.sample_prompts" in chat.status
