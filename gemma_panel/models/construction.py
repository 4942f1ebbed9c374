"""Build a model whose weights are about to be loaded, without drawing random weights.

KerasHub's ``from_preset`` builds the backbone first (every variable drawn from its
initializer, op by op on the host), then overwrites every weight from the checkpoint. On
Gemma 3 270M the draw of the 262,144 x 640 embedding alone passes through several 671 MB
temporaries: building the backbone peaked at 3.6 GB of resident memory for a 1.07 GB model.
Inside ``zeros_for_loaded_weights`` the large variables (``LARGE`` elements and up) are
created as zeros instead: the same shapes and dtypes, no random temporaries. Nothing of
them survives loading: KerasHub deletes every weight's first value before it loads the
checkpoint (``jax_memory_cleanup``), so a weight the checkpoint lacked would fail loudly,
not train from zeros. Small variables (seed states, norms) keep their initializers.

Keras has no public switch for this; the wrapped method is the JAX variable's
``_initialize_with_initializer`` (keras 3.15). Where it is missing the model is built as
before (correct, only the peak is higher).
"""

from __future__ import annotations

import contextlib
import math
import threading

LARGE = 1 << 16
# The patch is on a class: two threads loading at once (the chat's two models) would
# restore each other's patch, so one loads at a time (re-entering in one thread is fine),
# and only the loading thread's variables start as zeros.
_LOCK = threading.RLock()
_LOADING = threading.local()


@contextlib.contextmanager
def zeros_for_loaded_weights():
    """Large variables created inside are zeros, not random draws (see the module)."""
    with _LOCK:
        yield from _zeros_for_loaded_weights()


def _zeros_for_loaded_weights():
    import keras

    try:
        from keras.src.backend.jax.core import JaxVariable
    except ImportError:
        JaxVariable = None
    original = getattr(JaxVariable, "_initialize_with_initializer", None)
    if keras.config.backend() != "jax" or original is None:
        yield
        return
    zeros = keras.initializers.Zeros()

    def initialize(self, initializer):
        large = getattr(_LOADING, "on", False) and math.prod(self._shape) >= LARGE
        return original(self, zeros if large else initializer)

    JaxVariable._initialize_with_initializer = initialize
    was, _LOADING.on = getattr(_LOADING, "on", False), True
    try:
        yield
    finally:
        JaxVariable._initialize_with_initializer = original
        _LOADING.on = was
