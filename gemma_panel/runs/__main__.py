"""``python -m gemma_panel.runs worker RUN_ID`` (and the other run commands), without the
main CLI; the queue starts workers this way."""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from gemma_panel.cli.runs import main

sys.exit(main())
