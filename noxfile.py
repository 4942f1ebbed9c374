"""Automation: `nox -l` lists the sessions; `nox` runs the tests."""

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


# Debian packages the tests use, by the file each one provides: Chromium for the real-browser
# dashboard tests (Playwright drives /usr/bin/chromium; it never downloads a browser of its
# own) and WordNet 3.0 for synonym augmentation.
SYSTEM_PACKAGES = {"/usr/bin/chromium": "chromium",
                   "/usr/share/wordnet/data.noun": "wordnet-base"}
# Set to 1 to run the tests without them: their tests are then skipped, and said so.
ALLOW_MISSING = "GEMMA_PANEL_ALLOW_MISSING_SYSTEM_PACKAGES"


def install_system_packages(session) -> None:
    """Install the missing SYSTEM_PACKAGES with apt-get when root; otherwise stop and say
    exactly what to run (never skip their tests silently)."""
    missing = [pkg for path, pkg in SYSTEM_PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-qq", external=True, env=env)
        session.run("apt-get", "install", "-y", "-qq", *missing, external=True, env=env)
        return
    wanted = ", ".join(f"{path} ({pkg})" for path, pkg in SYSTEM_PACKAGES.items()
                       if pkg in missing)
    how = (f"sudo apt-get install -y {' '.join(missing)}" if shutil.which("apt-get") else
           f"install them with your system's package manager: {wanted}")
    if os.environ.get(ALLOW_MISSING) == "1":
        session.warn(f"MISSING system packages {', '.join(missing)}: the tests that need "
                     f"them are SKIPPED (pytest -rs lists them). Install with: {how}")
        return
    session.error(f"the tests need {wanted}. Run: {how}; then `nox -s tests` again "
                  f"(or set {ALLOW_MISSING}=1 to run without them, their tests skipped).")


# Test processes (pytest-xdist): most tests wait on a subprocess, a browser or one-threaded
# Python, so two processes finish the suite on two cores far sooner than one. Files stay
# whole in one process, and the real-270M files run one after the other (tests/conftest.py).
# `nox -s tests -- -n 0` runs everything in one process.
PARALLEL = ["-n", str(min(4, os.cpu_count() or 1)), "--dist", "loadgroup"]


@nox.session
def tests(session):
    """Install what the tests need, system packages too, and run them (-- -m "not slow").

    Pytest arguments go after --; -rs lists every skipped test with its reason, and the 25
    slowest tests are listed at the end."""
    install_system_packages(session)
    # cloud: tests/cloud run the Google libraries against gcp-storage-emulator (in dev).
    # docs: tests/tooling/test_docs.py builds the site as `nox -s docs` does.
    session.install("-e", ".[dev,augment,cloud,docs]")
    # outside the repository: session.create_tmp() would also move pytest's TMPDIR into it
    shared = tempfile.mkdtemp(prefix="gemma-panel-shared-runs-")
    env = {SHARED_RUNS: shared}
    try:
        session.run("pytest", "-rs", *PARALLEL, "--durations=25", "--alone=skip",
                    *session.posargs, env=env)
        # Then the tests marked alone (the 270M LiteRT conversion, ~15 GB), in one process
        # with the machine to themselves; 5 is pytest's "nothing selected" (-m "not slow").
        session.run("pytest", "-rs", "--alone=only", *session.posargs, "-n", "0",
                    success_codes=[0, 5], env=env)
    finally:
        shutil.rmtree(shared, ignore_errors=True)  # the tests' own runs (a 270M's, ~1 GB)


# A new folder both pytest runs share, so a run a slow fixture trained in the first is
# loaded, not trained again, in the second (tests/conftest.py shared_run_dir).
SHARED_RUNS = "GEMMA_PANEL_TEST_SHARED_RUNS"


@nox.session
def lint(session):
    """Check the code with ruff."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", "gemma_panel", "tests", "benchmarks", "scripts", *session.posargs)


@nox.session
def docs(session):
    """Build the documentation site into site/ with warnings as errors (open site/index.html)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs,
                env={"DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"})


@nox.session
def demo(session):
    """The main job: LoRA-tune the bundled Gemma 3 270M with recipes/quickstart.yaml."""
    session.install("-e", ".")
    session.run("gemma-panel", "run", "recipes/quickstart.yaml", *session.posargs)


@nox.session
def dashboard(session):
    """Serve the Panel dashboard on 127.0.0.1:5006 (pass panel serve options after --)."""
    session.install("-e", ".")
    session.run("panel", "serve", "dashboards/studio.py", "--address", "127.0.0.1",
                *session.posargs)


@nox.session
def screenshots(session):
    """Write docs/screenshots from a real Gemma 3 270M run in the served dashboard.

    About 15 minutes on 2 CPU cores; options after --, see scripts/screenshots.py --help."""
    install_system_packages(session)
    session.install("-e", ".[dev]")
    session.run("python", "scripts/screenshots.py", *session.posargs)


@nox.session
def benchmarks(session):
    """Run the speed and memory benchmarks in benchmarks/ and print their figures."""
    session.install("-e", ".[dev]")
    for script in ("model_load.py", "train_throughput.py", "data_throughput.py",
                   "metrics_overhead.py", "dashboard_latency.py", "export_cost.py",
                   "head_loss.py"):
        session.run("python", f"benchmarks/{script}", *session.posargs)
