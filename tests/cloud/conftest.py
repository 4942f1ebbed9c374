"""Cloud Storage tests against gcp-storage-emulator, served in this process on 127.0.0.1.

The emulator speaks google-cloud-storage's JSON and upload APIs (ranged reads, resumable
uploads, checksums) but does not enforce generation preconditions or ACLs: those paths are
tested against a client double (preconditions) and a loopback server that answers 403 the
way Cloud Storage does (tests/cloud/forbidden.py).
"""

from __future__ import annotations

import itertools
import socket

import pytest

pytest.importorskip("google.cloud.storage", reason="the cloud extra is not installed")
pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def emulator():
    """The emulator's base URL; it holds everything in memory and stops with the session."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


_names = itertools.count()


@pytest.fixture
def gcs(emulator, monkeypatch):
    """A storage client on the emulator (STORAGE_EMULATOR_HOST set) and a fresh bucket."""
    from gemma_panel.cloud import gcs as gcs_module

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setattr(gcs_module, "_CLIENTS", {})
    client = gcs_module.default_client()
    bucket = client.create_bucket(f"test-bucket-{next(_names)}")
    return client, bucket


@pytest.fixture
def vertex_api(monkeypatch):
    """A loopback Vertex AI JobService (``VertexServer``) that the real SDK's REST client
    talks to, with anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials

    from gemma_panel.cloud import vertex

    from .vertex_server import VertexServer

    server = VertexServer()
    monkeypatch.setenv(vertex.ENDPOINT_ENV, server.url)
    real = vertex.job_client
    monkeypatch.setattr(vertex, "job_client",
                        lambda region, credentials=None: real(region, AnonymousCredentials()))
    yield server
    server.close()
