"""notebooks/quickstart.ipynb runs top to bottom in a fresh kernel and shows the app."""

from __future__ import annotations

import pytest

from tests.ui.conftest import REPO, recorded_run

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes_and_shows_the_app(store, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    a = recorded_run(store, "nb-high", 3e-4)
    b = recorded_run(store, "nb-low", 1e-4)
    monkeypatch.setenv("GEMMA_PANEL_HOME", str(store.root))  # the kernel inherits it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [c.get("outputs", []) for c in nb.cells if c.cell_type == "code"]
    errors = [o for cell in outputs for o in cell if o.get("output_type") == "error"]
    assert not errors, errors

    def shown(cell) -> str:
        return " ".join(str(v) for o in cell for v in o.get("data", {}).values())

    app = shown(outputs[0])
    assert "application/vnd.holoviews_exec.v0+json" in {k for o in outputs[0]
                                                       for k in o.get("data", {})}
    for tab in ("Configure", "Train", "Compare"):
        assert tab in app
    listing = shown(outputs[1])
    assert a.id in listing and b.id in listing
    assert "holoviews_exec" in " ".join(k for o in outputs[2] for k in o.get("data", {}))
    compared = shown(outputs[3])
    assert a.id in compared and b.id in compared
