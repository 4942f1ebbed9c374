"""Fixtures for the dashboard tests: a private store, a tiny model's recipe, a served app."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gemma_panel.config import load_recipe
from tests.runs.conftest import FAKE, REPO, fake_recipe, store, wait_finished, wait_for  # noqa: F401

EXAMPLES = REPO / "examples"
UNIT_CONVERSIONS = EXAMPLES / "instruction" / "unit_conversions.jsonl"
TOPICS = EXAMPLES / "classification" / "topics.csv"
SERVED_APP = Path(__file__).with_name("served_studio.py")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A 2-layer random Gemma 3 with a real (tiny) SentencePiece tokenizer."""
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    path = tmp_path_factory.mktemp("tiny") / "tiny-gemma3.gguf"
    return write_tiny_gemma_gguf(path, "gemma3", hidden=64, heads=2, kv_heads=1,
                                 head_dim=256, ffn=128, layers=2)


def tiny_overrides(gguf: Path, steps: int) -> list[str]:
    """A run of the real trainer on the tiny model that records every step."""
    return [f"model.source={gguf}", f"data.train_path={UNIT_CONVERSIONS}",
            "data.sequence_length=64", "train.batch_size=2", f"train.max_steps={steps}",
            "train.warmup_steps=1", "train.checkpoint_every=50", "train.log_every=1",
            "eval.every_steps=40", "eval.num_samples=1", "eval.max_new_tokens=4",
            "eval.max_examples=4", "eval.task_examples=0"]


@pytest.fixture
def tiny_recipe_path(tmp_path, tiny_gguf) -> Path:
    from gemma_panel.config import recipe_to_yaml

    recipe = load_recipe(None, ["name=tiny", *tiny_overrides(tiny_gguf, 100000)])
    path = tmp_path / "tiny.yaml"
    path.write_text(recipe_to_yaml(recipe))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``panel serve`` of a dashboard script in a child process, on 127.0.0.1."""

    def __init__(self, script: Path, env: dict, port: int | None = None):
        self.script, self.env = script, env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/{script.stem}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Server:
        command = [sys.executable, "-m", "panel", "serve", str(self.script), "--address",
                   "127.0.0.1", "--port", str(self.port), "--allow-websocket-origin",
                   f"127.0.0.1:{self.port}", "--num-procs", "1"]
        self.log = Path(self.env["GEMMA_PANEL_HOME"]) / f"server-{self.port}.log"
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"panel serve exited with {self.proc.returncode}; see "
                                   f"{self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"panel serve did not listen on {self.port} within {timeout} s")

    def get(self, path: str = "", timeout: float = 60.0) -> tuple[int, str]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return response.status, response.read().decode()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


def server_env(run_store, **extra) -> dict:
    env = dict(os.environ, GEMMA_PANEL_HOME=str(run_store.root), **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("KERAS_BACKEND", "jax")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def recorded_run(run_store, name: str, lr: float, steps: int = 6, attempt: int = 0):
    """A run with a few steps of metrics and one sample, written straight to the store."""
    run = run_store.create_run(load_recipe(None, [f"name={name}", f"train.learning_rate={lr}"]))
    for step in range(1, steps + 1):
        run_store.add_metrics(run.id, attempt, step, step * 100, {"loss": 4.0 / step,
                                                              "learning_rate": lr})
    run_store.add_metrics(run.id, attempt, steps, steps * 100, {"val_loss": 2.5,
                                                            "val_perplexity": 12.2})
    run_store.add_samples(run.id, attempt, steps, [{"prompt": "p", "base": "b", "tuned": name}])
    return run


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server child, killing it if it has not stopped within 10 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def dashboard(store):  # noqa: F811 - the imported fixture, by name
    """``python -m gemma_panel dashboard`` on a free port, over the test's store."""
    port = free_port()
    log = Path(store.root) / "dashboard.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gemma_panel", "dashboard", "--port",
                                 str(port)], env=server_env(store), cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def listening():
        assert proc.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False
    wait_for(listening, timeout=90, every=0.2, what="the dashboard to listen")
    yield f"http://127.0.0.1:{port}/studio"
    stop_process(proc)


@pytest.fixture(scope="module")
def browser():
    """One Chromium (Debian's, see tests/ui/browser.py) for a test module."""
    from playwright.sync_api import sync_playwright

    from tests.ui.browser import launch

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def server(store, tiny_recipe_path):  # noqa: F811 - store: the imported fixture, by name
    """The studio served over the test's store, its recipe the tiny model's."""
    srv = Server(SERVED_APP, server_env(store, GP_TEST_RECIPE=str(tiny_recipe_path))).start()
    yield srv
    srv.stop()
