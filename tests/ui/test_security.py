"""The dashboard when someone else can reach it: login, confined paths, upload limit, jobs.

The view-model tests are fast; the server tests start the real server (``gemma-panel
dashboard`` in a child process, ``serve_dashboard`` in a thread) and talk HTTP and
websockets to it.
"""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest

from gemma_panel.ui import ConfigModel, DataModel, Jobs, Studio
from gemma_panel.ui.server_paths import DATA_ROOTS_ENV, PathRefused
from gemma_panel.ui.uploads import LimitedFileDropper, websocket_max_message_bytes
from tests.ui.conftest import REPO, UNIT_CONVERSIONS, free_port, server_env, stop_process

LINE = '{"prompt": "a?", "response": "b"}\n'

# -- server paths ----------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory with one dataset, a secret beside it and a symlink out."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "ok.jsonl").write_text(LINE * 3)
    (outside / "secret.jsonl").write_text(LINE * 3)
    (work / "link.jsonl").symlink_to(outside / "secret.jsonl")
    monkeypatch.chdir(work)
    monkeypatch.delenv(DATA_ROOTS_ENV, raising=False)
    return work, outside


def test_a_path_on_the_server_is_read_only_inside_the_data_roots(workdir, monkeypatch):
    _, outside = workdir
    data = DataModel(model_source="")
    for path in (str(outside / "secret.jsonl"), "../outside/secret.jsonl", "link.jsonl",
                 "/etc/passwd", "/no/such/file.jsonl"):
        data.load(path)
        assert data.error.startswith(f"{path}: outside the folders this dashboard may read (")
        assert data.error.count(". ") == 0 and "--data-root FOLDER" in data.error
        assert data.path == "" and data.jobs.running == []  # nothing was read
    data.load("no_such.jsonl")  # inside: the usual words
    assert data.error == "no_such.jsonl: no such file on the server"
    for path in ("ok.jsonl", str(UNIT_CONVERSIONS)):  # the working directory, the examples
        data.load(path)
        data.jobs.wait()
        assert data.path == path and data.report["rows_usable"] > 0, data.error
    data.upload("mine.jsonl", LINE.encode())  # the uploads folder
    data.jobs.wait()
    assert data.report["rows_usable"] == 1 and data.error == ""
    monkeypatch.setenv(DATA_ROOTS_ENV, str(outside))  # --data-root OUTSIDE
    data.load("link.jsonl")
    data.jobs.wait()
    assert data.error == "" and data.report["rows_usable"] == 3
    data.load("ok.jsonl")  # the working directory is no longer a root
    assert "outside the folders" in data.error


def test_a_recipe_is_loaded_from_the_server_only_inside_the_roots(workdir, gemma_panel_home):
    work, outside = workdir
    (outside / "r.yaml").write_text("name: secret\n")
    (work / "r.yaml").write_text("name: mine\n")
    cfg = ConfigModel(base_path=None)
    cfg.load_server_path(str(outside / "r.yaml"))
    assert cfg.message.startswith("Not loaded: ") and "outside the folders" in cfg.message
    assert cfg.settings["name"] != "secret"
    cfg.load_server_path("r.yaml")
    assert cfg.settings["name"] == "mine"
    saved = cfg.save("kept")  # GEMMA_PANEL_HOME/recipes is readable too
    cfg.load_server_path(str(saved))
    assert cfg.message == f"Loaded {saved}"


def test_recipes_are_saved_only_in_the_recipes_folder_and_never_over_a_file(
        workdir, gemma_panel_home):
    _, outside = workdir
    recipes = gemma_panel_home / "recipes"
    studio = Studio()
    cfg, view = studio.config, studio.config_view
    for name in ("../../evil", str(outside / "evil.yaml"), "a/b.yaml", ".bashrc"):
        with pytest.raises(PathRefused, match="plain file name"):
            cfg.save(name)
    assert not list(outside.glob("*.yaml")) and not (gemma_panel_home / "evil.yaml").exists()
    path = cfg.save("mine")
    assert path == recipes / "mine.yaml" and cfg.saved_path == str(path)
    first = path.read_text()
    cfg.set("lora.rank", 32)
    with pytest.raises(PathRefused, match="already exists .* 'Replace an existing file'"):
        cfg.save("mine.yaml")
    assert path.read_text() == first
    # The page: refused in words, then replaced once the box is ticked (and unticked after).
    view.save_path.value = "mine"
    view._save(None)
    assert cfg.message.startswith("Not saved: mine.yaml already exists")
    assert path.read_text() == first
    view.replace.value = True
    view._save(None)
    assert "rank: 32" in path.read_text() and cfg.message == f"Saved to {path}"
    assert view.replace.value is False
    # Two different uploaded recipes with one name are both kept.
    cfg.load_text("name: one\n", "same.yaml")
    cfg.load_text("name: two\n", "same.yaml")
    assert sorted(p.read_text() for p in recipes.glob("*-same.yaml")) == [
        "name: one\n", "name: two\n"]


# -- the upload limit, on the server ---------------------------------------------------------


def _chunk(name: str, data: bytes, chunk: int, total: int) -> SimpleNamespace:
    """The event Panel's FileDropper model sends for one chunk of a file."""
    return SimpleNamespace(event_name="upload_event", data={
        "name": name, "chunk": chunk, "total_chunks": total, "data": data,
        "type": "application/octet-stream"})


def test_an_upload_over_the_limit_is_dropped_as_its_chunks_arrive(monkeypatch,
                                                                  gemma_panel_home):
    monkeypatch.setenv("GEMMA_PANEL_MAX_UPLOAD_MB", "0.001")  # 1048 bytes
    studio = Studio()
    dropper, data = studio.data_view.dropper, studio.data
    assert isinstance(dropper, LimitedFileDropper)
    dropper._process_event(_chunk("big.csv", b"x" * 600, 1, 3))
    assert data.error == "" and dropper._file_buffer["big.csv"]
    dropper._process_event(_chunk("big.csv", b"x" * 600, 2, 3))  # 1200 bytes: over
    assert dropper._file_buffer == {} and dropper.value == {}  # not held, not stored
    assert data.error.startswith("big.csv: 0.0 MB is over the upload limit of 0MB")
    assert data.status == "Upload refused."
    dropper._process_event(_chunk("big.csv", b"x" * 600, 3, 3))  # the rest is ignored
    assert dropper.value == {} and not list((gemma_panel_home / "uploads").glob("*big*"))
    # Two files in flight count together.
    dropper._process_event(_chunk("a.csv", b"x" * 600, 1, 2))
    dropper._process_event(_chunk("b.csv", b"x" * 600, 1, 2))
    assert "b.csv" not in dropper._file_buffer and "b.csv: " in dropper.refused
    # A file under the limit still arrives whole and is checked.
    dropper._process_event(_chunk("a.csv", b"prompt,response\na,b\n", 2, 2))
    assert list(dropper.value) == ["a.csv"] and dropper._file_buffer == {}


def _page(url: str, opener=None) -> str:
    with (opener or urllib.request.build_opener()).open(url, timeout=60) as response:
        return response.read().decode()


def _wait_page(url: str, opener=None, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _page(url, opener)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _websocket_frame_header(size: int) -> bytes:
    """A masked binary frame announcing ``size`` bytes (none of them sent)."""
    return bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big") + b"mask"


def test_the_server_refuses_a_websocket_message_larger_than_one_chunk(store, monkeypatch):
    """The real server, and a client that ignores the page's chunking.

    The frame's header announces its length, so the server can refuse it before a byte of
    it is held: it answers with a close frame, code 1009 (message too big).
    """
    import socket

    from gemma_panel.ui.serve import serve_dashboard

    monkeypatch.setenv("GEMMA_PANEL_HOME", str(store.root))
    port = free_port()
    thread = serve_dashboard(port, threaded=True)
    limit = websocket_max_message_bytes()
    assert limit < 8 * 2**20  # not Bokeh's 20 MB default
    try:
        page = _wait_page(f"http://127.0.0.1:{port}/studio")
        token = re.search(r'"token":"([^"]+)"', page).group(1)
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall((f"GET /studio/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          f"Sec-WebSocket-Protocol: bokeh, {token}\r\n\r\n").encode())
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            assert received.startswith(b"HTTP/1.1 101"), received[:200]
            sock.sendall(_websocket_frame_header(limit + 1))
            while chunk := sock.recv(65536):  # until the server hangs up
                received += chunk
        assert b"\x03\xf1message too big" in received  # close code 1009
    finally:
        thread.stop()


# -- login when other machines can reach it --------------------------------------------------


def _own_address() -> str | None:
    """This machine's first non-loopback IPv4 address, if it has one."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    return next((a for a in out if "." in a and not a.startswith("127.")), None)


class Dashboard:
    """``gemma-panel dashboard`` in a child process; its first lines are kept."""

    def __init__(self, store, *args: str, **env: str):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gemma_panel.cli", "dashboard", "--port", str(self.port),
             *args], env=server_env(store, PYTHONUNBUFFERED="1", **env), cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines = [self.proc.stdout.readline(), self.proc.stdout.readline()]
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # drain

    def stop(self) -> None:
        stop_process(self.proc)


def _login(base: str, password: str):
    """An opener holding the cookies of a login with ``password``, and the page it lands on."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    _page(f"{base}/login?next=/studio", opener)
    body = urllib.parse.urlencode({"username": "me", "password": password}).encode()
    with opener.open(f"{base}/login", data=body, timeout=60) as response:
        return opener, response.read().decode()


def test_binding_every_interface_asks_for_the_printed_password(store):
    dash = Dashboard(store, "--address", "0.0.0.0")
    try:
        assert "reachable from other machines, so it asks for a login" in dash.lines[0]
        password = re.search(r"password (\S+) \(set GEMMA_PANEL_PASSWORD", dash.lines[0])[1]
        hosts = ["127.0.0.1", *filter(None, [_own_address()])]
        for host in hosts:
            base = f"http://{host}:{dash.port}"
            page = _wait_page(f"{base}/studio")  # no cookie: redirected to the login form
            assert 'name="password"' in page and "data-root-id" not in page
            _, page = _login(base, "wrong")
            assert "Invalid username or password" in page and "data-root-id" not in page
            _, page = _login(base, password)
            assert "<title>Gemma fine-tuning studio</title>" in page
            assert "data-root-id" in page and 'id="theme-switch"' in page  # the app itself
    finally:
        dash.stop()


def test_a_password_from_the_environment_is_used_and_not_printed(store):
    address = _own_address() or "0.0.0.0"
    dash = Dashboard(store, "--address", address, GEMMA_PANEL_PASSWORD="s3cret-from-env")
    try:
        assert "the password in GEMMA_PANEL_PASSWORD" in dash.lines[0]
        assert "s3cret-from-env" not in "".join(dash.lines)
        base = f"http://{'127.0.0.1' if address == '0.0.0.0' else address}:{dash.port}"
        assert 'name="password"' in _wait_page(f"{base}/studio")
        _, page = _login(base, "s3cret-from-env")
        assert "data-root-id" in page
    finally:
        dash.stop()


def test_loopback_stays_login_free(store):
    dash = Dashboard(store)  # 127.0.0.1
    try:
        assert "for this machine only, no login" in dash.lines[0]
        page = _wait_page(f"http://127.0.0.1:{dash.port}/studio")
        assert "data-root-id" in page and 'name="password"' not in page
    finally:
        dash.stop()


@pytest.mark.skipif(_own_address() is None, reason="this machine has no non-loopback address")
def test_panel_serve_without_a_login_shows_other_machines_only_a_refusal(store):
    """`panel serve dashboards/studio.py --address 0.0.0.0`: no studio for a remote peer."""
    port, own = free_port(), _own_address()
    env = server_env(store)
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(REPO / "dashboards" / "studio.py"),
         "--address", "0.0.0.0", "--port", str(port), "--allow-websocket-origin", "*"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        remote = _wait_page(f"http://{own}:{port}/studio")  # the refusal comes by websocket
        assert 'id="theme-switch"' not in remote and "Gemma fine-tuning studio" not in remote
        local = _page(f"http://127.0.0.1:{port}/studio")
        assert 'id="theme-switch"' in local  # this machine still gets the studio
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class _Doc:
    """A session's document, as much of it as ``studio_page`` reads."""


def test_the_refusal_cannot_be_talked_round_with_a_cookie(monkeypatch, store):
    """A remote peer without a cookie this server signed gets the refusal, not the studio."""
    import panel as pn

    from gemma_panel.ui import serve

    monkeypatch.setenv("GEMMA_PANEL_HOME", str(store.root))
    for peer, cookies in (("192.0.2.9", {}), ("192.0.2.9", {"is_guest": "1", "user": "me"}),
                          ("::ffff:192.0.2.9", {})):
        request = SimpleNamespace(remote_ip=peer, cookies=cookies, arguments={}, headers={})
        doc = _Doc()  # panel keeps per-document settings by weak reference
        doc.session_context = SimpleNamespace(request=request)
        monkeypatch.setattr(type(pn.state), "curdoc", property(lambda _, d=doc: d))
        page = serve.studio_page()
        assert isinstance(page, pn.pane.Alert) and page.object == serve.REFUSED
    assert serve.is_loopback("::ffff:127.0.0.1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("")


# -- one slow job does not hold up another tab -----------------------------------------------


def test_a_slow_job_in_one_session_does_not_block_a_quick_one_in_another(tmp_path,
                                                                         monkeypatch):
    from gemma_panel.ui import data_model

    slow = tmp_path / "slow.jsonl"
    slow.write_text(LINE)
    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    release = threading.Event()
    real_check = data_model.check_file

    def check_file(path, *args):
        if path == str(slow):
            release.wait(30)
        return real_check(path, *args)

    def measure_tokens(path, *args):
        release.wait(30)  # a tokenizer's first import: minutes on a real model
        raise RuntimeError("no tokenizer in this test")

    monkeypatch.setattr(data_model, "check_file", check_file)
    monkeypatch.setattr(data_model, "measure_tokens", measure_tokens)
    busy, other = DataModel(model_source="tiny"), DataModel(model_source="")
    try:
        busy.load(str(slow))  # its check and its token measurement both wait
        assert sorted(busy.jobs.running) == ["check", "tokens"]
        started = time.monotonic()
        other.load(str(UNIT_CONVERSIONS))
        other.jobs.wait(timeout=10)
        assert other.report["rows_usable"] == 314 and time.monotonic() - started < 10
        assert sorted(busy.jobs.running) == ["check", "tokens"]  # still waiting
    finally:
        release.set()
    busy.jobs.wait(timeout=30)
    assert busy.report["rows_usable"] == 1


def test_closed_jobs_drop_what_has_not_started():
    jobs, seen, gate = Jobs(), [], threading.Event()
    for _ in range(3):
        jobs.submit("wait", lambda: gate.wait(10), seen.append)
    jobs.close()  # the session ended
    gate.set()
    time.sleep(0.2)
    jobs.poll()
    assert seen == [True, True]  # the two running finished; the queued one never ran


def test_start_refuses_a_typed_data_path_outside_the_data_roots(workdir, store):
    """The Configure tab's data.train_path reaches the worker: Start confines it too."""
    from gemma_panel.ui import RunsModel
    from tests.ui.conftest import FAKE, fake_recipe

    _, outside = workdir
    runs = RunsModel(store, trainer=FAKE)
    for path in (str(outside / "secret.jsonl"), "link.jsonl"):
        runs.start(fake_recipe(f"data.train_path={path}", name="sneaky"))
        runs.jobs.wait()
        assert ": outside the folders this dashboard may read" in runs.notice, runs.notice
        assert store.list_runs() == []
    runs.start(fake_recipe("data.train_path=ok.jsonl", name="fine"))
    runs.jobs.wait()
    assert runs.selected is not None and runs.selected.startswith("fine-")
