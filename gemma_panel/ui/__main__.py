"""``python -m gemma_panel.ui [--port 5006] [--address 127.0.0.1] [--show]``: another name for
``gemma-panel dashboard``, so one parser and one error boundary serve both. An entry point,
like ``gemma_panel/__main__.py``: no module imports it (tests/tooling/test_architecture.py)."""

import sys

from gemma_panel.cli import main

sys.exit(main(["dashboard", *sys.argv[1:]]))
