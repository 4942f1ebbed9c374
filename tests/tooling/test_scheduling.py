"""`nox -s tests` runs the tests in two processes; whole files go to one process, and the
files that hold the real Gemma 3 270M all go to the same one (tests/conftest.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

from tests.conftest import REAL_270M, REAL_270M_FILES, scheduling_unit
from tests.runs.conftest import REPO


def test_every_listed_file_exists_and_every_real_270m_fixture_user_is_listed():
    for path in REAL_270M_FILES:
        assert (REPO / path).is_file(), f"{path} is listed in REAL_270M_FILES but gone"
    users = {str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
             if re.search(r"def test\w*\([^)]*\breal_(model|gguf_path)\b", p.read_text())}
    assert users and users <= REAL_270M_FILES, users - REAL_270M_FILES


def test_a_file_is_one_unit_and_the_real_270m_files_are_one():
    assert scheduling_unit("tests/export/test_exports_270m.py::test_gguf[f32]") == REAL_270M
    assert scheduling_unit("tests/models/test_default_model.py::test_x") == REAL_270M
    assert scheduling_unit("tests/test_files.py::test_y[a::b]") == "tests/test_files.py"


def test_two_processes_keep_the_real_270m_files_together():
    """The scheduler at work: pytest-xdist with two processes, on the fast tests of a listed
    file and of two other files; each listed file's tests all ran in one process."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-m",
         "not slow", "-p", "no:cacheprovider", "tests/models/test_gguf_tokenizer.py",
         "tests/test_files.py", "tests/planning/test_model_size.py"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    workers = defaultdict(set)
    for worker, nodeid in re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED (\S+)", out.stdout):
        workers[scheduling_unit(nodeid)].add(worker)
    assert len(workers) == 3 and all(len(w) == 1 for w in workers.values()), dict(workers)
