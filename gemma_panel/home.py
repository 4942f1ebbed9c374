"""Where gemma_panel keeps its state: runs, the model cache, uploads."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """``$GEMMA_PANEL_HOME``, or ``~/.gemma_panel``; created on first use."""
    path = Path(os.environ.get("GEMMA_PANEL_HOME") or Path.home() / ".gemma_panel")
    path.mkdir(parents=True, exist_ok=True)
    return path
