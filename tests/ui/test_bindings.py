"""Views bind to their view-model; the model's outputs are read-only outside it.

For each view-model: assigning one of its outputs (a status, a message, a table) from
outside raises, and a widget edit reaches the model's parameter through the widget's
binding, with no hand-written watcher in between.
"""

from __future__ import annotations

import pytest

from gemma_panel.ui import CompareModel
from gemma_panel.ui.compare_view import CompareView
from tests.ui.conftest import recorded_run


def _read_only(model, **values) -> None:
    for name, value in values.items():
        with pytest.raises(TypeError, match=f"Constant parameter '{name}'"):
            setattr(model, name, value)


# -- compare ---------------------------------------------------------------------------------


def test_compare_outputs_are_read_only_and_the_view_follows_its_widgets(store):
    a = recorded_run(store, "lr-high", 3e-4)
    b = recorded_run(store, "lr-low", 1e-4, steps=4)
    cmp = CompareModel(store)
    view = CompareView(model=cmp)
    _read_only(cmp, curves={"loss": {}}, table=[{"run": "x"}], fields=[], samples=[],
               message="written by a view")
    assert cmp.message == "Pick two or more runs." and cmp.table == []
    view.chooser.value = [a.id, b.id]  # as the browser would
    assert cmp.chosen == [a.id, b.id]
    assert list(view.table.object["run"]) == [a.id, b.id]
    assert list(view.samples.object[a.id]) == ["lr-high"]
    assert view.charts["loss"].source.data["run"] == [a.id, b.id]
    view.axis.value = "tokens"
    assert cmp.x == "tokens"
    assert view.charts["loss"].source.data["xs"][0][:2] == [100, 200]
    assert view.charts["loss"].figure.xaxis.axis_label == "tokens"
