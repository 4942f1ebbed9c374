"""Run a test script in a fresh process that sees N simulated CPU devices.

JAX fixes its device count (from ``XLA_FLAGS``) once per process, so every multi-device
test runs its script as a child and reads the JSON report it prints as its last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_on_host_devices(module: str, devices: int = 8, timeout: int = 300) -> dict:
    """``python -m module`` with ``devices`` host devices; its last stdout line, parsed."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}").strip()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
