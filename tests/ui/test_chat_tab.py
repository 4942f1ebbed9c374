"""The Chat tab's view-model without a browser: choices, read-only outputs, what each side
is asked, and the prompts saved into the Configure tab's recipe."""

from __future__ import annotations

import shutil
from pathlib import Path

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


class _Client:
    """Takes the requests a ChatModel sends (nothing is loaded or answered)."""

    def __init__(self):
        self.requests: list[dict] = []

    def chat(self, request):
        self.requests.append(request)
        return object()

    def stop(self, reply):
        pass


def test_the_choice_lists_the_runs_exports_and_the_request_names_the_one_picked(store,
                                                                                 tiny_gguf):
    from gemma_panel.export.manifest import write_manifest
    from gemma_panel.ui.chat_model import ChatModel

    recipe = tiny_recipe(tiny_gguf)
    run = store.create_run(recipe)
    only_exported = store.create_run(recipe)  # its checkpoints are gone, its export is not
    write_tuned_checkpoint(recipe, run.run_dir)
    for target, fmt, passed in ((run, "gguf", True), (run, "savedmodel", True),
                                (only_exported, "preset", False)):
        folder = Path(target.run_dir) / "exports" / f"{fmt}-step{STEP:06d}"
        folder.mkdir(parents=True)
        write_manifest(folder, {"format": fmt, "quantize": "f16" if fmt == "gguf" else None,
                                "source": {"step": STEP}, "verification": {"passed": passed}})
    client = _Client()
    chat = ChatModel(store, client=client)
    assert set(chat.param.run.objects) == {run.id, only_exported.id}
    chat.run = run.id
    gguf = f"export gguf-step{STEP:06d} (gguf f16, verified)"
    assert chat.param.checkpoint.objects == ["latest", f"step {STEP}", gguf]  # no savedmodel
    chat.param.update(checkpoint=gguf, message="2 km in m?")
    chat.send()
    assert (client.requests[-1]["export"], client.requests[-1]["step"]) == (
        f"gguf-step{STEP:06d}", None)
    write(chat, busy=False)
    chat.param.update(checkpoint=f"step {STEP}", message="And 3 km?")
    chat.send()
    assert (client.requests[-1]["export"], client.requests[-1]["step"]) == (None, STEP)

    chat.run = only_exported.id
    preset = f"export preset-step{STEP:06d} (preset, NOT verified)"
    assert chat.param.checkpoint.objects == [preset] and chat.checkpoint == preset


def test_an_unchanged_refresh_reads_no_manifest_and_a_change_is_seen(store, tiny_gguf,
                                                                     monkeypatch):
    """The app refreshes the Chat tab's runs every 3 seconds: only folders that changed
    are read again (before: every run's checkpoint meta and export manifests, each time)."""
    from gemma_panel.export.manifest import MANIFEST, write_manifest
    from gemma_panel.ui.chat_model import ChatModel

    recipe = tiny_recipe(tiny_gguf)
    runs = [store.create_run(recipe) for _ in range(3)]
    write_tuned_checkpoint(recipe, runs[0].run_dir)
    for run in runs[1:]:
        shutil.copytree(Path(runs[0].run_dir) / "checkpoints", Path(run.run_dir) / "checkpoints",
                        dirs_exist_ok=True)
    exports = Path(runs[0].run_dir) / "exports"

    def export(fmt, passed):
        folder = exports / f"{fmt}-step{STEP:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        write_manifest(folder, {"format": fmt, "quantize": None, "source": {"step": STEP},
                                "verification": {"passed": passed}})

    export("gguf", False)
    reads = []
    real = Path.read_text

    def read_text(path, *args, **kwargs):
        if path.name in (MANIFEST, "meta.json"):
            reads.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    chat = ChatModel(store, client=_Client())
    chat.run = runs[0].id
    assert reads  # the first refresh reads them all
    reads.clear()
    for _ in range(3):
        chat.refresh_runs()
    assert reads == [] and len(chat.param.run.objects) == 3

    export("gguf", True)  # the manifest rewritten: verified now
    export("keras", True)  # a new export folder
    chat.refresh_runs()
    assert set(chat.param.checkpoint.objects) >= {
        f"export gguf-step{STEP:06d} (gguf, verified)",
        f"export keras-step{STEP:06d} (keras, verified)"}
    assert reads and all(Path(runs[0].run_dir) in r.parents for r in reads)  # that run only
