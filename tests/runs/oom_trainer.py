"""A stand-in trainer that runs out of memory after it has started, as a real one would.

``recipe.name`` says how: "memoryerror" raises Python's MemoryError; "xla" raises the real
``jax.errors.JaxRuntimeError`` with XLA's RESOURCE_EXHAUSTED message; "sigkill" kills its
own process (as the kernel's OOM killer would) after its first step.
"""

from __future__ import annotations

import os
import signal
import time

XLA_MESSAGE = ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes. "
               "BufferAssignment OOM Debugging.")


def train(recipe, run_dir, sink, should_stop=lambda: False, resume=False):
    sink.on_start({"total_steps": 10, "start_step": 0, "tokens_per_step": 8})
    sink.on_metrics(1, 8, {"loss": 3.0, "learning_rate": 1e-3})
    if recipe.name == "memoryerror":
        raise MemoryError()
    if recipe.name == "xla":
        from jax.errors import JaxRuntimeError

        raise JaxRuntimeError(XLA_MESSAGE)
    if recipe.name == "sigkill":
        time.sleep(0.5)  # the heartbeat has beaten: the run is seen running
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError(f"oom_trainer: unknown recipe name {recipe.name!r}")
