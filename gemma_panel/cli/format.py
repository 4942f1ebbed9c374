"""How the command line writes counts, sizes, durations and times: one way each."""

from __future__ import annotations

import datetime

from gemma_panel.training.events import duration  # noqa: F401  (one rule: h:mm:ss)


def megabytes(nbytes: int) -> str:
    """A file size in megabytes, aligned for a column: 1234567 -> '      1.23 MB'."""
    return f"{nbytes / 1e6:10.2f} MB"


def seconds(s: float) -> str:
    """A short measured time: 1.234 -> '1.2 s'."""
    return f"{s:.1f} s"


def when(ts: float | None) -> str:
    """A timestamp as local 'YYYY-MM-DD HH:MM'; '-' when unknown."""
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"
