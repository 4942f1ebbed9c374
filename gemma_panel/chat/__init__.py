"""Chat with a run's tuned model beside its base model, in a worker process.

    pair = ModelPair(run_dir, step)              # tuned at a checkpoint + its base, loaded once
    pair = ModelPair(run_dir, export="gguf-f16-step000004")   # or one of the run's exports
    fmt = run_chat_format(run_dir)               # the run's chat format (system role or not)
    client = shared_client()                     # the server's one worker (JSON lines)
    reply = client.chat({...}); reply.events()   # pieces of both answers as they come

The worker (``python -m gemma_panel.chat.worker``) holds the models, so the dashboard's
process never loads one; see ``engine`` for what a request holds and what comes back.
"""

from .client import ChatClient, Reply, shared_client
from .conversation import ChatFormat, recipe_chat_format, run_chat_format
from .engine import ChatEngine, sampling_options
from .pair import SIDES, ModelPair

__all__ = [
    "SIDES",
    "ChatClient",
    "ChatEngine",
    "ChatFormat",
    "ModelPair",
    "Reply",
    "recipe_chat_format",
    "run_chat_format",
    "sampling_options",
    "shared_client",
]
