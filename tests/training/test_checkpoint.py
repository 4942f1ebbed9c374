"""Checkpoints killed mid-save: never counted, swept at the next save and at resume."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from gemma_panel import files
from gemma_panel.runs.folder import RunFolder
from gemma_panel.training.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

STATE = ({"w": np.arange(3.0)}, {"m": np.zeros(3)})

# Saves step 5 and is SIGKILLed at the rename that would move the whole checkpoint into
# place: its partial folder already holds state.npz and meta.json.
KILLED_SAVE = """
import os, signal, sys
import numpy as np
from gemma_panel.training.checkpoint import save_checkpoint

def killed(src, dst):
    os.kill(os.getpid(), signal.SIGKILL)

os.rename = killed
save_checkpoint(sys.argv[1], 5, {"w": np.arange(3.0)}, {"m": np.zeros(3)}, {"loss": 1.0})
"""


def killed_save(run_dir):
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(run_dir)], timeout=300,
                          check=False)
    assert done.returncode == -9
    leftover, = [p for p in (run_dir / "checkpoints").iterdir() if p.name != "step-000004"]
    assert (leftover / "meta.json").is_file() and (leftover / "state.npz").is_file()
    return leftover


def test_a_checkpoint_killed_mid_save_is_never_counted_and_is_swept(tmp_path):
    run_dir = tmp_path / "run"
    leftover = killed_save(run_dir)
    assert files.is_partial(leftover.name)
    assert not RunFolder(run_dir).has_checkpoint()
    assert list_checkpoints(run_dir) == []

    live = run_dir / "checkpoints" / f".partial-step-000006.pid{os.getppid()}.abcd1234"
    live.mkdir()
    (live / "meta.json").write_text("{}")
    assert not RunFolder(run_dir).has_checkpoint()

    path = save_checkpoint(run_dir, 6, *STATE, {"loss": 0.5})
    assert not leftover.exists()  # its writer is dead: swept at the next save
    assert live.is_dir()  # a running writer's partial is kept
    assert RunFolder(run_dir).has_checkpoint()
    assert list_checkpoints(run_dir) == [path]


def test_resume_sweeps_dead_partials(tmp_path):
    run_dir = tmp_path / "run"
    path = save_checkpoint(run_dir, 4, *STATE, {"loss": 1.0})
    leftover = killed_save(run_dir)
    trainable, _, meta = load_checkpoint(path, *STATE)
    assert meta["step"] == 4 and np.array_equal(trainable["w"], STATE[0]["w"])
    assert not leftover.exists()
    assert [p.name for p in path.parent.iterdir()] == ["step-000004"]
