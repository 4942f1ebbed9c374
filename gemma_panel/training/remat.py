"""Activation recomputation per decoder block (``memory.remat``), patched while tracing.

Without it, the backward pass reads every intermediate of every decoder block that the
forward pass kept: attention scores, feed-forward activations, norms, block by block. With
it, each block's ``call`` runs under ``jax.checkpoint``, so only each block's input is kept
and the block's forward pass is run again when its gradient is needed: activation memory
drops from every block's to about one block's, for about one more forward pass per step.

Keras has the same idea (``keras.RematScope``), but only for layers built inside the scope;
the blocks of a loaded model were built already, so their ``call`` is wrapped here for the
duration of one trace and put back after, like the patches in ``keras_internals``. Written
against keras-hub 0.32.x: a decoder block's ``call(self, x, padding_mask=None, ...)``.
``require_remat_internals`` raises ``KerasInternalsChanged`` if that is gone.
"""

from __future__ import annotations

import contextlib
import inspect

import jax

from gemma_panel.training.keras_internals import KerasInternalsChanged, installed_versions

BLOCK_CALL_START = ("self", "x", "padding_mask")  # the first parameters of each block's call


def remat_missing(blocks) -> list[str]:
    """What the patch needs and these decoder blocks lack (empty: all there)."""
    missing = []
    for block in blocks:
        parameters = tuple(inspect.signature(type(block).call).parameters)
        if parameters[:len(BLOCK_CALL_START)] != BLOCK_CALL_START:
            missing.append(f"{type(block).__name__}.call{BLOCK_CALL_START + ('...',)} "
                           f"(it is call{parameters})")
    return sorted(set(missing))


def require_remat_internals(blocks) -> None:
    missing = remat_missing(blocks)
    if missing:
        raise KerasInternalsChanged(
            f"memory.remat wraps each decoder block's call, written against keras-hub 0.32.x "
            f"(installed: {installed_versions()['keras_hub']}), which lacks "
            f"{', '.join(missing)}. Set memory.remat=false, or update "
            "gemma_panel/training/remat.py.")


def _checkpointed(original):
    """``original(x, **kwargs)`` under ``jax.checkpoint``: arrays are its inputs, the other
    arguments (None, Python numbers, flags) are fixed at trace time."""

    def call(x, **kwargs):
        arrays = {k: v for k, v in kwargs.items() if isinstance(v, jax.Array)}
        fixed = {k: v for k, v in kwargs.items() if k not in arrays}
        return jax.checkpoint(lambda x_, arrays_: original(x_, **arrays_, **fixed))(x, arrays)

    return call


@contextlib.contextmanager
def remat_blocks(backbone, enabled: bool):
    """While tracing, each of ``backbone.transformer_layers`` recomputes its activations in
    the backward pass instead of storing them (nothing changes when ``enabled`` is False)."""
    if not enabled:
        yield
        return
    blocks = list(backbone.transformer_layers)
    require_remat_internals(blocks)
    saved = [(block, block.__dict__.get("call")) for block in blocks]
    for block in blocks:
        block.call = _checkpointed(block.call)
    try:
        yield
    finally:
        for block, own in saved:
            if own is None:
                del block.call  # the class's call shows through again
            else:
                block.call = own
