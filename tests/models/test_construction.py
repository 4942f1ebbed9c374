"""Loading builds the model without random draws, and hands freed heap pages back."""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest

from gemma_panel.host_memory import release_free_memory
from gemma_panel.models import construction
from gemma_panel.models.construction import zeros_for_loaded_weights
from tests.models.tiny_gguf import write_tiny_gemma_gguf


def test_large_variables_are_zeros_and_small_ones_keep_their_initializer():
    import keras

    with zeros_for_loaded_weights():
        large = keras.layers.Dense(300, kernel_initializer="random_normal")
        large.build((None, 300))  # 90,000 elements: at or above LARGE
        small = keras.layers.Dense(4, kernel_initializer="random_normal")
        small.build((None, 4))
    after = keras.layers.Dense(300, kernel_initializer="random_normal")
    after.build((None, 300))
    assert not np.asarray(large.kernel.value).any()
    assert np.asarray(small.kernel.value).std() > 0
    assert np.asarray(after.kernel.value).std() > 0  # the context puts Keras back


def test_a_model_built_from_zeros_loads_every_weight_from_its_checkpoint(tmp_path,
                                                                         monkeypatch):
    """With every variable created as zeros the loaded model still answers as the one
    built from random draws: no zero survives loading."""
    from gemma_panel.models import load_model

    path = write_tiny_gemma_gguf(tmp_path / "tiny.gguf", "gemma3", hidden=64, heads=2,
                                 kv_heads=1, head_dim=32, ffn=128, layers=2)
    x = np.array([[2, 5, 7, 11, 3]], dtype="int32")

    def logits():
        lm = load_model(str(path), progress=False)
        hidden = lm.backbone({"token_ids": x, "padding_mask": np.ones_like(x)})
        return lm, np.asarray(lm.backbone.token_embedding(hidden, reverse=True))

    from keras.src.backend.jax.core import JaxVariable

    drawn = []  # the initializers Keras really ran while load_model built the model
    real = JaxVariable._initialize_with_initializer

    def spy(self, initializer):
        drawn.append(type(initializer).__name__)
        return real(self, initializer)

    monkeypatch.setattr(JaxVariable, "_initialize_with_initializer", spy)
    monkeypatch.setattr(construction, "LARGE", 1)  # every variable starts as zeros
    lm, zeros_first = logits()
    assert drawn and set(drawn) == {"Zeros"}  # load_model builds under the context
    assert all(np.asarray(w.value).any() for w in lm.backbone.weights
               if np.prod(w.shape) > 1)
    monkeypatch.setattr(construction, "LARGE", sys.maxsize)  # none does
    _, drawn_first = logits()
    np.testing.assert_array_equal(zeros_first, drawn_first)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_pages_go_back_to_the_system():
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 << 10) for _ in range(4096)]  # 256 MB in the heap, not mmap
    for block in blocks:
        ctypes.memset(block, 1, 64 << 10)
    pin = libc.malloc(64 << 10)  # above them: free() alone cannot shrink the heap's top
    for block in blocks:
        libc.free(block)
    before = _rss_mb()
    assert release_free_memory()
    after = _rss_mb()
    libc.free(pin)
    assert before - after > 128


def test_another_threads_variables_keep_their_initializer_while_one_loads():
    import threading

    import keras

    inside, built = threading.Event(), {}

    def other():
        inside.wait(30)
        layer = keras.layers.Dense(300, kernel_initializer="random_normal")
        layer.build((None, 300))
        built["kernel"] = np.asarray(layer.kernel.value)

    worker = threading.Thread(target=other)
    worker.start()
    with zeros_for_loaded_weights():
        inside.set()
        worker.join(30)
    assert built["kernel"].std() > 0
