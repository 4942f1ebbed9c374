"""Automation: `nox -l` lists the sessions; `nox` runs the tests."""

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session):
    """Run the test suite (pass pytest arguments after --, e.g. -- -m "not slow")."""
    session.install("-e", ".[dev,augment]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session):
    """Check the code with ruff."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", "gemma_panel", "tests", "benchmarks", *session.posargs)


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
def benchmarks(session):
    """Run the speed and memory benchmarks in benchmarks/ and print their figures."""
    session.install("-e", ".[dev]")
    for script in ("model_load.py", "train_throughput.py", "data_throughput.py",
                   "metrics_overhead.py", "dashboard_latency.py", "export_cost.py"):
        session.run("python", f"benchmarks/{script}", *session.posargs)
