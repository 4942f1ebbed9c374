"""Chat with a finished export: it answers as the checkpoint it was made from.

A tiny LoRA run is exported (a KerasHub preset, GGUF f16, and the LoRA adapter alone) by the
exporters themselves, its checkpoint's answers are taken, and then its checkpoints are
deleted: whatever the chat answers afterwards can only come from the export files. As in test_engine.py, the answers
that must differ are sampled at temperature 10 (greedy answers of the tiny random model
repeat one token whatever its LoRA says).
"""

from __future__ import annotations

import json
import shutil

import pytest

from gemma_panel.chat import ChatEngine, ModelPair
from gemma_panel.export import export_run
from gemma_panel.export.inventory import (
    CHAT_FORMATS,
    Checkpoints,
    load_export,
    run_checkpoints,
    run_exports,
)
from gemma_panel.export.manifest import ExportError, write_manifest
from tests.chat.test_engine import QUESTION, SAMPLED, _answers
from tests.chat.tiny_run import STEP, tiny_recipe, write_tuned_checkpoint

GREEDY = {"greedy": True, "max_new_tokens": 12}


def _ask(engine: ChatEngine, events: list[dict], run_dir, options: dict, **target):
    events.clear()
    engine.submit({"id": "q", "run_dir": str(run_dir), "options": options, **target,
                   "conversations": {"base": QUESTION, "tuned": QUESTION}})
    return _answers(engine, events)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_gguf):
    """(run folder with its exports and no checkpoint left, the checkpoint's answers)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-export-chat"
    write_tuned_checkpoint(tiny_recipe(tiny_gguf, "tiny-export-chat"), run_dir)
    export_run(run_dir, "preset")
    export_run(run_dir, "gguf")
    export_run(run_dir, "lora")
    events: list[dict] = []
    engine = ChatEngine(events.append)
    reference = {name: _ask(engine, events, run_dir, options, step=STEP)
                 for name, options in (("sampled", SAMPLED), ("greedy", GREEDY))}
    del engine
    shutil.rmtree(run_dir / "checkpoints")  # from here on only the exports can answer
    return run_dir, reference


def test_the_run_lists_its_exports_with_format_and_verification(exported):
    run_dir, _ = exported
    found = {e.name: e for e in run_exports(run_dir)}
    assert set(found) == {"preset-step000003", "gguf-f16-step000003", "lora-step000003"}
    gguf = found["gguf-f16-step000003"]
    assert (gguf.format, gguf.quantize, gguf.step, gguf.verified) == ("gguf", "f16", STEP, True)
    assert gguf.chattable and gguf.label == "export gguf-f16-step000003 (gguf f16, verified)"
    assert gguf.row()["MB"] > 0 and run_checkpoints(run_dir) == Checkpoints()


@pytest.mark.parametrize("export", ["preset-step000003", "gguf-f16-step000003",
                                    "lora-step000003"])
def test_an_export_answers_as_the_checkpoint_it_came_from(exported, export):
    run_dir, reference = exported
    loads: list[str] = []

    def load(*args, **kwargs):
        loads.append(kwargs.get("export"))
        return ModelPair(*args, **kwargs)

    events: list[dict] = []
    engine = ChatEngine(events.append, load=load)
    sampled = _ask(engine, events, run_dir, SAMPLED, export=export)
    assert sampled == reference["sampled"] and sampled["tuned"] != sampled["base"]
    assert "its export " + export in events[0]["text"]
    assert _ask(engine, events, run_dir, GREEDY, export=export) == reference["greedy"]
    assert loads == [export]  # loaded once, reused for the next message
    assert engine.pair.key == (str(run_dir.resolve()), None, export)
    # A merged export's base is loaded beside it; a LoRA adapter's is itself, LoRA off.
    assert engine.pair.step == STEP and engine.pair.lora == export.startswith("lora")


def test_an_unknown_or_unloadable_export_is_told_in_words(exported, tmp_path):
    run_dir, _ = exported
    events: list[dict] = []
    engine = ChatEngine(events.append)
    _ask(engine, events, run_dir, GREEDY, export="hf-step000009")
    assert events[-2]["event"] == "error"
    assert "no export 'hf-step000009'" in events[-2]["text"]
    assert "gguf-f16-step000003" in events[-2]["text"]

    folder = tmp_path / "savedmodel-step000003"
    folder.mkdir()
    write_manifest(folder, {"format": "savedmodel", "verification": {"passed": True}})
    with pytest.raises(ExportError, match="'savedmodel' export cannot be chatted with"):
        load_export(folder)
    assert "savedmodel" not in CHAT_FORMATS
    (folder / "manifest.json").write_text(json.dumps({"format": "gguf"})[:5])
    with pytest.raises(ExportError, match="holds no readable export"):
        load_export(folder)
