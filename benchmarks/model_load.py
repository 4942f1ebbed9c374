"""Model loading: first import of the bundled GGUF, and a cached load, in fresh processes.

    python benchmarks/model_load.py

Each figure comes from a new Python process (imports included), in a fresh GEMMA_PANEL_HOME,
so it is what a user waits for at the command line. Target: cached load <= 15 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, time
t0 = time.perf_counter()
from gemma_panel.models import load_model, prepare_model
t1 = time.perf_counter()
location = prepare_model("gemma3-270m", progress=False)
t2 = time.perf_counter()
lm = load_model("gemma3-270m", progress=False)
t3 = time.perf_counter()
print(json.dumps({"import_libraries_s": t1 - t0, "prepare_s": t2 - t1,
                  "build_and_load_s": t3 - t2, "total_s": t3 - t0}))
"""


def run_child(home: str) -> dict:
    env = dict(os.environ, GEMMA_PANEL_HOME=home, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        first = run_child(home)
        cached = run_child(home)
        record = json.loads(next(Path(home, "models").glob("gguf-*/import.json")).read_text())
    print(f"{'':<34}{'first run':>12}{'cached':>12}")
    for key in ("import_libraries_s", "prepare_s", "build_and_load_s", "total_s"):
        print(f"{key:<34}{first[key]:>12.1f}{cached[key]:>12.1f}")
    print(f"GGUF -> cache import (dequantize, write): {record['import_seconds']:.1f} s")
    target = 15.0
    print(f"cached load {cached['total_s']:.1f} s; target <= {target:.0f} s: "
          f"{'met' if cached['total_s'] <= target else 'NOT met'} "
          f"(ratio {cached['total_s'] / target:.2f})")


if __name__ == "__main__":
    main()
