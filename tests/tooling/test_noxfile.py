"""`nox -s tests` installs the system packages the tests need, or stops and says what to run."""

from __future__ import annotations

import importlib.util

import pytest

from tests.runs.conftest import REPO


class FakeSession:
    def __init__(self):
        self.runs, self.warnings = [], []

    def run(self, *args, **kwargs):
        self.runs.append(args)

    def warn(self, message):
        self.warnings.append(message)

    def error(self, message):
        raise SystemExit(message)


@pytest.fixture
def noxfile(monkeypatch, tmp_path):
    pytest.importorskip("nox")
    spec = importlib.util.spec_from_file_location("noxfile_under_test", REPO / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "SYSTEM_PACKAGES", {str(tmp_path / "chromium"): "chromium",
                                                    str(tmp_path / "data.noun"): "wordnet-base"})
    monkeypatch.setattr(module.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.delenv(module.ALLOW_MISSING, raising=False)
    return module


def test_root_with_apt_installs_what_is_missing(noxfile, monkeypatch):
    monkeypatch.setattr(noxfile.os, "geteuid", lambda: 0)
    session = FakeSession()
    noxfile.install_system_packages(session)
    assert session.runs[-1] == ("apt-get", "install", "-y", "-qq", "chromium", "wordnet-base")


def test_without_root_it_stops_with_the_command_to_run(noxfile, monkeypatch):
    monkeypatch.setattr(noxfile.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit, match="Run: sudo apt-get install -y chromium wordnet-base"):
        noxfile.install_system_packages(FakeSession())
    monkeypatch.setenv(noxfile.ALLOW_MISSING, "1")
    session = FakeSession()
    noxfile.install_system_packages(session)  # allowed, and said loudly
    assert session.runs == [] and "SKIPPED" in session.warnings[0]


def test_nothing_is_done_when_everything_is_there(noxfile, tmp_path):
    for path in noxfile.SYSTEM_PACKAGES:
        open(path, "w").close()
    session = FakeSession()
    noxfile.install_system_packages(session)
    assert session.runs == [] and session.warnings == []
