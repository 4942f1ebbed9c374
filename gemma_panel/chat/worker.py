"""The chat worker process: ``python -m gemma_panel.chat.worker``, JSON lines both ways.

It reads requests on stdin, one JSON object a line:

- ``{"op": "chat", "id", "run_dir", "step", "export", "conversations", "system",
  "options"}`` (``export``: the name of one of the run's exports, instead of a step);
- ``{"op": "stop", "id"}``: end that request's answers now;
- ``{"op": "quit"}`` (or stdin closing): exit, which frees the models' memory.

and writes the ``ChatEngine``'s events on stdout, one JSON object a line, after a first
``{"event": "ready"}``. Anything a library prints goes to stderr instead, so stdout carries
nothing but the protocol. A thread reads stdin while the main thread generates, so a stop
reaches an answer between two of its tokens.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading

from gemma_panel.chat.engine import ChatEngine


def _read_requests(inbox: queue.Queue) -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            inbox.put(json.loads(line))
        except ValueError:
            print(f"chat worker: not a JSON request: {line[:200]!r}", file=sys.stderr)
    inbox.put(None)  # stdin closed: whoever started us is gone


def _protocol_stdout():
    """A line-buffered writer on the real stdout; fd 1 (print, C libraries) -> stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def serve(inbox: queue.Queue, emit) -> None:
    """Handle requests from ``inbox`` until it yields a quit (or None)."""
    engine = ChatEngine(emit)
    while True:
        try:  # while answering, take what came in between two pieces; else wait for it
            message = inbox.get(block=not engine.busy)
        except queue.Empty:
            message = {"op": "none"}
        op = message.get("op") if message is not None else "quit"
        if op == "quit":
            return
        if op == "chat":
            engine.submit(message)
        elif op == "stop":
            engine.stop(message["id"])
        if inbox.empty():
            engine.step()


def main() -> None:
    out = _protocol_stdout()
    lock = threading.Lock()

    def emit(event: dict) -> None:
        with lock:
            out.write(json.dumps(event) + "\n")

    inbox: queue.Queue = queue.Queue()
    threading.Thread(target=_read_requests, args=(inbox,), daemon=True).start()
    emit({"event": "ready", "pid": os.getpid()})
    serve(inbox, emit)


if __name__ == "__main__":
    main()
