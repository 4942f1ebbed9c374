"""gemma_panel: fine-tune Gemma with LoRA on JAX/Keras 3, from a dashboard, a notebook or a CLI.

Keras picks its backend once, when it is first imported; gemma_panel trains on JAX, so the
package sets ``KERAS_BACKEND=jax`` (unless the user chose otherwise) before anything imports
Keras.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

__version__ = "0.1.0"
