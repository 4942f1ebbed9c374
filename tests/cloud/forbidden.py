"""A loopback stand-in for Cloud Storage where the caller has only some permissions.

gcp-storage-emulator grants everything, so a read-only identity is tested here: each request
that needs a permission the identity lacks gets the JSON API's 403 body, worded as Cloud
Storage words it; IAM's signBlob (how an impersonated identity signs a download link) is
answered here too, refused unless ``iam.serviceAccounts.signBlob`` is granted. A
service-account key file whose ``token_uri`` points here lets the real
google-auth flow (a JWT signed with the key, exchanged for a token) run against it.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

EMAIL = "reader@test-project.iam.gserviceaccount.com"


def service_account_key(path, token_uri: str) -> str:
    """Write a service-account key file with a fresh RSA key; return its path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "test-project", "private_key_id": "k1",
        "private_key": pem, "client_email": EMAIL, "client_id": "1", "token_uri": token_uri}))
    return str(path)


SIGN_BLOB = "iam.serviceAccounts.signBlob"


def _needed(method: str, path: str) -> str:
    if re.fullmatch(r"/v1/projects/-/serviceAccounts/[^/]+:signBlob", path):
        return SIGN_BLOB  # IAM Credentials' signBlob (an impersonated identity's signing)
    if path == "/token":
        return ""
    if path.endswith("/iam/testPermissions"):
        return ""
    if method == "POST" and path.startswith("/upload/"):
        return "storage.objects.create"
    if re.fullmatch(r"/storage/v1/b/[^/]+", path):
        return "storage.buckets.get"
    return "storage.objects.get"


class ForbiddenServer:
    """Serves one bucket, ``bucket``, holding ``objects`` (name -> bytes); requests needing a
    permission outside ``granted`` are refused with 403. ``calls`` records (method, path)."""

    def __init__(self, bucket: str, objects: dict[str, bytes], granted: set[str]):
        self.bucket, self.objects, self.granted = bucket, objects, granted
        self.calls: list[tuple[str, str]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

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
                if length:
                    self.rfile.read(length)
                url = urlparse(self.path)
                server.calls.append((method, url.path))
                status, body = server.respond(method, url.path, parse_qs(url.query))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                if isinstance(body, bytes) and ranged:
                    start, end = int(ranged[1]), int(ranged[2] or len(data) - 1)
                    data, status = data[start:end + 1], 206
                    self.send_response(status)
                    self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}"
                                                      f"/{len(body)}")
                else:
                    self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def respond(self, method: str, path: str, query: dict) -> tuple[int, dict | bytes]:
        if path == "/token":
            return 200, {"access_token": "test-token", "expires_in": 3600,
                         "token_type": "Bearer"}
        needed = _needed(method, path)
        if needed == SIGN_BLOB and needed not in self.granted:  # worded as IAM words it
            return 403, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": (
                f"Permission '{SIGN_BLOB}' denied on resource (or it may not exist).")}}
        if needed == SIGN_BLOB:
            import base64

            return 200, {"keyId": "k2", "signedBlob": base64.b64encode(b"signed").decode()}
        if needed and needed not in self.granted:
            message = (f"{EMAIL} does not have {needed} access to the Google Cloud Storage "
                       f"object. Permission '{needed}' denied on resource (or it may not "
                       "exist).")
            return 403, {"error": {"code": 403, "message": message, "errors": [
                {"message": message, "domain": "global", "reason": "forbidden"}]}}
        if path.endswith("/iam/testPermissions"):
            asked = query.get("permissions", [])
            return 200, {"kind": "storage#testIamPermissionsResponse",
                         "permissions": [p for p in asked if p in self.granted]}
        download = re.fullmatch(r"/download/storage/v1/b/([^/]+)/o/(.+)", path)
        if download and download.group(2) in self.objects:
            return 200, self.objects[download.group(2)]
        match = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)", path)
        if match and match.group(2) in self.objects:
            data = self.objects[match.group(2)]
            return 200, {"kind": "storage#object", "bucket": self.bucket,
                         "name": match.group(2), "size": str(len(data)),
                         "generation": "1", "metageneration": "1"}
        return 404, {"error": {"code": 404, "message": "No such object."}}
