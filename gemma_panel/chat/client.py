"""The dashboard's side of the chat worker: start it, send requests, collect their events.

One ``ChatClient`` per server process (``shared_client()``) drives one worker process
(``gemma_panel.chat.worker``), which every browser tab of that server shares: the worker
serves one model pair at a time and streams the answers of all requests on it together;
a request for another run or checkpoint waits for the answers under way (see
``ChatEngine``). The worker starts with the first request, and is told to quit after
``idle_s`` seconds without one, which frees the models' memory; the next request starts a
fresh one. If the worker dies, every request it had gets an error event and ends.

A thread reads the worker's stdout and files each event under its request's ``Reply``;
the page takes them from there (``Reply.events()``) on its own thread.

Example:
    >>> client = ChatClient()
    >>> reply = client.chat({"run_dir": "runs/tiny-3f2a1b", "step": 4, "system": "",
    ...                      "conversations": {"base": [["user", "Hi"]],
    ...                                        "tuned": [["user", "Hi"]]},
    ...                      "options": {"max_new_tokens": 32}})
    >>> reply.wait(); "".join(e["text"] for e in reply.events() if e["event"] == "piece")
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading

IDLE_S = float(os.environ.get("GEMMA_PANEL_CHAT_IDLE_S", "600"))  # then the worker quits
WORKER = [sys.executable, "-m", "gemma_panel.chat.worker"]


class Reply:
    """The events of one request, in the order the worker sent them."""

    def __init__(self, request_id: str, worker: subprocess.Popen):
        self.id, self.worker = request_id, worker
        self._events: queue.Queue = queue.Queue()
        self.finished = threading.Event()

    def put(self, event: dict) -> None:
        self._events.put(event)
        if event.get("event") == "done":
            self.finished.set()

    def events(self) -> list[dict]:
        """The events that came since the last call (none waits)."""
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the request is done; False if ``timeout`` passed first."""
        return self.finished.wait(timeout)


class ChatClient:
    """Requests to one chat worker process (started on demand, quit when idle).

    Args:
        command: the worker's command line (default: this Python's
            ``-m gemma_panel.chat.worker``).
        idle_s: quit the worker after this long with no request under way.
    """

    def __init__(self, command: list[str] | None = None, idle_s: float = IDLE_S):
        self.command, self.idle_s = list(command or WORKER), idle_s
        self._lock = threading.Lock()
        self._worker: subprocess.Popen | None = None
        self._replies: dict[str, Reply] = {}
        self._ids = itertools.count(1)
        self._idle_timer: threading.Timer | None = None

    @property
    def worker_pid(self) -> int | None:
        with self._lock:
            return self._worker.pid if self._worker is not None else None

    def chat(self, request: dict) -> Reply:
        """Send a chat request (see ``gemma_panel.chat.worker``); its events come to the
        returned ``Reply``."""
        with self._lock:
            worker = self._running_worker()
            request_id = f"{os.getpid()}-{next(self._ids)}"
            reply = self._replies[request_id] = Reply(request_id, worker)
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._send(worker, {**request, "op": "chat", "id": request_id})
        return reply

    def stop(self, reply: Reply) -> None:
        """End the request's answers where they are (its ``end`` events say stopped)."""
        with self._lock:
            if not reply.finished.is_set():
                self._send(reply.worker, {"op": "stop", "id": reply.id})

    def close(self) -> None:
        """Tell the worker to quit (answers under way end with an error)."""
        with self._lock:
            self._quit()

    # -- the worker process ------------------------------------------------------------------
    def _running_worker(self) -> subprocess.Popen:
        if self._worker is None or self._worker.poll() is not None:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self._worker = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True, env=env,
                                            encoding="utf-8", start_new_session=True)
            threading.Thread(target=self._read, args=(self._worker,), daemon=True,
                             name="gemma-panel-chat-reader").start()
        return self._worker

    def _send(self, worker: subprocess.Popen, message: dict) -> None:
        try:
            worker.stdin.write(json.dumps(message) + "\n")
            worker.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it died: the reader thread ends its requests with an error

    def _read(self, worker: subprocess.Popen) -> None:
        for line in worker.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                reply = self._replies.get(event.get("id"))
                if reply is not None and event.get("event") == "done":
                    del self._replies[reply.id]
                    self._idle_soon()
            if reply is not None:
                reply.put(event)
        self._worker_ended(worker)

    def _worker_ended(self, worker: subprocess.Popen) -> None:
        code = worker.wait()
        with self._lock:
            orphans = [r for r in self._replies.values() if r.worker is worker]
            for reply in orphans:
                del self._replies[reply.id]
            if self._worker is worker:
                self._worker = None
        for reply in orphans:
            reply.put({"id": reply.id, "event": "error",
                       "text": f"The chat worker stopped (exit status {code}) before answering; "
                               "the dashboard's log says why. Send the message again to "
                               "start a new one."})
            reply.put({"id": reply.id, "event": "done"})

    def _idle_soon(self) -> None:
        """(Lock held.) With nothing under way, quit the worker after ``idle_s``."""
        if self._replies:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = threading.Timer(self.idle_s, self._quit_if_idle)
        self._idle_timer.daemon = True
        self._idle_timer.start()

    def _quit_if_idle(self) -> None:
        with self._lock:
            if not self._replies:
                self._quit()

    def _quit(self) -> None:
        """(Lock held.) Ask the worker to exit; the next request starts a new one."""
        worker, self._worker = self._worker, None
        if worker is not None and worker.poll() is None:
            self._send(worker, {"op": "quit"})
            try:
                worker.stdin.close()
            except OSError:
                pass


_shared: ChatClient | None = None
_shared_lock = threading.Lock()


def shared_client() -> ChatClient:
    """The server process's one chat client (and so its one worker), made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ChatClient()
        return _shared

