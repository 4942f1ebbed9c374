"""Hand the C heap's free pages back to the system (glibc's ``malloc_trim``).

XLA's CPU buffers come from the C heap. Buffers up to 32 MB that a step or a load frees stay
in the heap as free pages glibc keeps (its mmap threshold grows to the size of the largest
buffer freed), so the process's resident memory, and its peak, carry hundreds of MB nobody
uses: on the quickstart's worker 390 MB after loading the model, 250-400 MB after an
evaluation. ``release_free_memory`` returns them at the points where a phase has freed its
temporaries (after loading, after each evaluation). It costs milliseconds, changes no
value, and does nothing on a C library without ``malloc_trim``.
``python benchmarks/quickstart_time.py`` reports the worker's peak (VmHWM).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; False where this C library cannot."""
    trim = _trim()
    if trim is None:
        return False
    trim(ctypes.c_size_t(0))
    return True
