"""The Cloud Storage emulator and the loopback Vertex AI server as pytest fixtures.

tests/cloud/conftest.py uses them; a test module elsewhere (tests/ui) imports them by name
(``from tests.cloud.fixtures import emulator, gcs, vertex_api``). Both servers listen on
127.0.0.1 and are reached through environment variables, so a dashboard served in a child
process (which inherits the test's environment) talks to them too.
"""

from __future__ import annotations

import itertools
import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def emulator():
    """The emulator's base URL; it holds everything in memory and stops with the session."""
    pytest.importorskip("google.cloud.storage", reason="the cloud extra is not installed")
    pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator is not installed")
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
    talks to; ``vertex.job_client`` calls an http:// endpoint with anonymous credentials."""
    pytest.importorskip("google.cloud.aiplatform_v1", reason="the cloud extra is not installed")
    from gemma_panel.cloud import vertex

    from .vertex_server import VertexServer

    server = VertexServer()
    monkeypatch.setenv(vertex.ENDPOINT_ENV, server.url)
    yield server
    server.close()
