"""A loopback stand-in for Vertex AI's JobService REST API that records every call.

Vertex AI has no emulator; the real google-cloud-aiplatform client (REST transport,
anonymous credentials, api_endpoint http://127.0.0.1:PORT) sends its requests here.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class VertexServer:
    """``calls``: (method, path, JSON body or None); ``state`` is what GET answers. A cancel
    is answered once ``answer_cancel`` is set (at most 10 s later), like a slow API."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict | None]] = []
        self.jobs: dict[str, dict] = {}
        self.answer_cancel = threading.Event()
        self.answer_cancel.set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def respond(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        self.calls.append((method, path, body))
        create = re.fullmatch(r"/v1/(projects/[^/]+/locations/[^/]+)/customJobs", path)
        if method == "POST" and create:
            name = f"{create.group(1)}/customJobs/{1000 + len(self.jobs)}"
            self.jobs[name] = {**body, "name": name, "state": "JOB_STATE_PENDING"}
            return 200, self.jobs[name]
        cancel = re.fullmatch(r"/v1/(.+):cancel", path)
        if method == "POST" and cancel and cancel.group(1) in self.jobs:
            self.answer_cancel.wait(timeout=10)
            self.jobs[cancel.group(1)]["state"] = "JOB_STATE_CANCELLING"
            return 200, {}
        name = path.removeprefix("/v1/")
        if method == "GET" and name in self.jobs:
            return 200, self.jobs[name]
        return 404, {"error": {"code": 404, "message": f"{name} not found",
                               "status": "NOT_FOUND"}}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def _answer(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else None
                status, answer = server.respond(method, self.path.split("?")[0], body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
