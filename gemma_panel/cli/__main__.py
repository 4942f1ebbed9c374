"""``python -m gemma_panel.cli ...``: the same as ``gemma-panel ...``."""

import sys

from gemma_panel.cli import main

sys.exit(main())
