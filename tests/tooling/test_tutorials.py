"""Every tutorial notebook in notebooks/ runs top to bottom in a fresh kernel, on a tiny model.

The notebooks read the model from ``GEMMA_PANEL_TUTORIAL_MODEL`` (default: the bundled Gemma 3
270M) and extra recipe overrides from ``GEMMA_PANEL_TUTORIAL_OVERRIDES`` (default: none, the
recipe as it is). Here the model is a 2-layer random Gemma 3 with a real SentencePiece
tokenizer and the runs take a few steps, so what is checked is that every cell works against
today's code (commands, recipes, example data, the Python API), not what a real model learns.

Each notebook gets its own run store, so its runs do not queue behind another notebook's, and
two notebooks execute at a time (the kernels and their workers mostly wait on each other).
The site renders the same notebooks (docs/gen_tutorials.py); the site build is in test_docs.py.
instruction.ipynb goes the dashboard's way (upload, configure, Start, Chat) through the
view-models the page is built on, so it also starts the chat worker: a few seconds more.
"""

from __future__ import annotations

import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
# Executed elsewhere: the dashboard notebook needs recorded runs (tests/ui/test_notebook.py).
TESTED_ELSEWHERE = {"quickstart"}
TUTORIALS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if p.stem not in TESTED_ELSEWHERE)

QUICK = ["data.sequence_length=256", "train.batch_size=2", "train.max_steps=3",
         "train.warmup_steps=1", "train.epochs=1", "eval.every_steps=3", "eval.num_samples=2",
         "eval.max_new_tokens=4", "eval.max_examples=4", "eval.task_examples=2"]


def execute(name: str, home: Path, model: Path):
    """The notebook after a run in a new kernel, and the error it stopped on (or None)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GEMMA_PANEL_HOME": str(home),
           "GEMMA_PANEL_TUTORIAL_MODEL": str(model),
           "GEMMA_PANEL_TUTORIAL_OVERRIDES": shlex.join(QUICK)}
    # a cell's limit: compare.ipynb's cell trains three runs one after the other
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
        return nb, f"{type(error).__name__}: {str(error)[-3000:]}"
    return nb, None


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    pytest.importorskip("nbclient", reason="nbclient is in the dev extra")
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    # without the tiny tokenizer's odd two-space piece, so the Hugging Face export verifies
    tiny = write_tiny_gemma_gguf(tmp_path_factory.mktemp("tiny") / "tiny-gemma3.gguf", "gemma3",
                                 hidden=64, heads=2, kv_heads=1, head_dim=256, ffn=128, layers=2,
                                 space_piece=False)
    homes = {name: tmp_path_factory.mktemp(f"home-{name}") for name in TUTORIALS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(execute, name, homes[name], tiny) for name in TUTORIALS}
        return {name: (*future.result(), homes[name]) for name, future in futures.items()}


def text_of(nb) -> str:
    """Everything the notebook's cells printed or showed, as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


def test_every_notebook_is_a_page_of_the_site():
    """docs/gen_tutorials.py renders each notebook as tutorials/NAME.md; the nav lists it."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS.glob("*.ipynb") if f"tutorials/{p.stem}.md" not in nav]
    assert not missing, f"add tutorials/NAME.md to the Tutorials of mkdocs.yml's nav: {missing}"
    assert len(TUTORIALS) >= 5 and "quickstart" not in TUTORIALS


@pytest.mark.parametrize("name", list(TUTORIALS))
def test_the_tutorial_runs_top_to_bottom(executed, name):
    from gemma_panel.runs import RunStore

    nb, error, home = executed[name]
    assert error is None, f"notebooks/{name}.ipynb stopped:\n{error}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "a cell did not run"
    # each trains for real, in its own store: every run it started succeeded
    runs = RunStore(home).list_runs()
    assert runs and all(r.status == "succeeded" for r in runs), [(r.id, r.status) for r in runs]
    assert len(runs) == (3 if name == "compare" else 1)
    if name == "export":  # both exports were verified by loading them back
        assert text_of(nb).count("verified:") == 2, text_of(nb)[-3000:]
    if name == "instruction":  # the dashboard's path: the uploaded CSV trained, then both
        uploads = list((home / "uploads").glob("*conversions.csv"))  # models answered
        assert len(uploads) == 1 and f"train_path: {uploads[0]}" in runs[0].recipe_yaml
        assert "--- base (" in text_of(nb) and "--- tuned (" in text_of(nb)
