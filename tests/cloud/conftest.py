"""Cloud Storage tests against gcp-storage-emulator, served in this process on 127.0.0.1.

The emulator speaks google-cloud-storage's JSON and upload APIs (ranged reads, resumable
uploads, checksums) but does not enforce generation preconditions or ACLs: those paths are
tested against a client double (preconditions) and a loopback server that answers 403 the
way Cloud Storage does (tests/cloud/forbidden.py).
"""

from __future__ import annotations

import pytest

pytest.importorskip("google.cloud.storage", reason="the cloud extra is not installed")
pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator is not installed")

from .fixtures import emulator, gcs, vertex_api  # noqa: F401 - fixtures, by name
