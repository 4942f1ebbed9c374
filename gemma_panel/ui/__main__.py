"""``python -m gemma_panel.ui [--port 5006] [--address 127.0.0.1] [--show]``."""

from gemma_panel.ui.serve import main

raise SystemExit(main())
