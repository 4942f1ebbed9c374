"""A run stopped partway and resumed, beside the same run straight through."""

from __future__ import annotations

from gemma_panel.training import train
from gemma_panel.training.checkpoint import latest_checkpoint


def stopped_and_resumed(recipe, folder, stop_at: int = 3, steps: int = 6, sink=None):
    """(straight result, resumed result) of ``recipe``; asserts the stop left its
    checkpoint and the resume ran to the end. ``sink`` hears the straight run."""
    straight = train(recipe, folder / "straight", sink)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] >= stop_at

    first = train(recipe, folder / "stopped", should_stop=stop)
    assert first.status == "cancelled" and first.step == stop_at
    assert latest_checkpoint(folder / "stopped").name == f"step-{stop_at:06d}"
    resumed = train(recipe, folder / "stopped", resume=True)
    assert resumed.status == "succeeded" and resumed.step == steps
    return straight, resumed
