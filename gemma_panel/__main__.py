"""``python -m gemma_panel ...``: the same as ``gemma-panel ...``."""

import sys

from gemma_panel.cli import main

sys.exit(main())
