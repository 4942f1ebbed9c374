"""The assembled app without a browser, and a smoke test that serves it over HTTP."""

from __future__ import annotations

import time

import panel as pn
import pytest

from gemma_panel.config import field_help, iter_fields
from gemma_panel.ui import Studio, compare_view, create_app, live_chart
from gemma_panel.ui.uploads import UploadError, sanitize_filename, save_upload
from tests.ui.conftest import REPO, UNIT_CONVERSIONS, Server, recorded_run, server_env


def _texts(obj) -> str:
    """All Markdown/HTML/Alert text and widget names inside a Panel layout."""
    out = []
    for pane in obj.select(lambda o: isinstance(o, (pn.pane.HTML, pn.pane.Markdown,
                                                    pn.widgets.Widget))):
        out.append(str(getattr(pane, "object", "") or ""))
        out.append(str(getattr(pane, "label", "") or ""))
    return "\n".join(out)


def test_uploads_are_sanitized_limited_and_stored_verbatim(tmp_path, monkeypatch):
    assert sanitize_filename("../../etc/passwd.csv") == "passwd.csv"
    assert sanitize_filename("C:\\Users\\me\\My Data (1).JSONL") == "My_Data_1.jsonl"
    assert sanitize_filename(".hidden.txt") == "hidden.txt"
    for bad in ("evil.py", "data.pkl", "noext", "x.csv.exe"):
        with pytest.raises(UploadError, match="not a dataset file"):
            sanitize_filename(bad)
    content = "prompt,response\nä,ö\n".encode("cp1252")
    path = save_upload("weird name.csv", content, root=tmp_path)
    assert path.parent == tmp_path and path.read_bytes() == content
    assert path.name.endswith("-weird_name.csv")
    monkeypatch.setenv("GEMMA_PANEL_MAX_UPLOAD_MB", "0.001")
    with pytest.raises(UploadError, match="over the upload limit of 0MB"):
        save_upload("big.csv", b"x" * 2000, root=tmp_path)
    with pytest.raises(UploadError, match="empty"):
        save_upload("e.csv", b"", root=tmp_path)


def test_configure_tab_draws_every_recipe_field_with_its_explanation(store):
    studio = Studio(store)
    widgets = studio.config_view.widgets
    for section, f, _ in iter_fields():
        assert f"{section}.{f.name}" in widgets
    layout = studio.config_view.__panel__()
    text = _texts(layout)
    for section, f, _ in iter_fields():
        help_text = field_help(f"{section}.{f.name}")
        assert help_text.replace("'", "&#x27;")[:60] in text or help_text[:60] in text
    # A widget edit reaches the recipe; a model edit reaches the widget.
    widgets["lora.rank"].value = 32
    assert studio.config.settings["lora.rank"] == 32
    studio.config.set("train.schedule", "linear")
    assert widgets["train.schedule"].value == "linear"
    assert "lora.rank=32" in studio.config.cli_command


def test_studio_links_data_to_recipe_and_streams_metrics_into_the_charts(store, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("GEMMA_PANEL_DATA_ROOTS", str(tmp_path))
    studio = Studio(store)
    studio.config.set("model.source", "")
    studio.config.set("data.sequence_length", 128)
    assert studio.data.sequence_length == 128
    studio.data.load(str(UNIT_CONVERSIONS))
    studio.jobs.wait()
    assert studio.config.settings["data.train_path"] == str(UNIT_CONVERSIONS)
    assert len(studio.data_view.kinds.value) == 0  # the example is clean: no tables shown
    assert not studio.data_view.kinds.visible and not studio.data_view.problems.visible
    assert len(studio.data_view.preview.value) == 50
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"\n')
    studio.data.load(str(bad))
    studio.jobs.wait()
    view = studio.data_view
    assert view.kinds.visible and list(view.kinds.value["code"]) == ["broken_json"]
    assert list(view.problems.value["where"]) == ["line 2"]
    assert "broken_json" in view.code_select.options

    run = recorded_run(store, "chart", 2e-4, steps=5)
    studio.runs.refresh_runs()
    studio.runs.selected = run.id
    studio.tick()
    source = studio.train_view.charts.sources["loss"]
    assert list(source.data["step"]) == [1, 2, 3, 4, 5]
    store.add_metrics(run.id, 0, 6, 600, {"loss": 0.4})
    studio.tick()
    assert list(source.data["step"]) == [1, 2, 3, 4, 5, 6]
    assert studio.train_view.charts.sources["val_loss"].data["value"] == [2.5]


def test_create_app_is_a_layout_in_a_notebook_and_a_template_when_served(store):
    layout = create_app(store, served=False)
    assert isinstance(layout, pn.Column)
    assert layout.studio.tabs._names == ["Data", "Configure", "Train", "Compare", "Export",
                                        "Chat", "Vertex AI"]
    template = create_app(store, served=True, theme="dark")
    assert isinstance(template, pn.template.FastListTemplate)
    assert template.theme.__name__.startswith("Dark")
    a = recorded_run(store, "nb-a", 1e-4)
    b = recorded_run(store, "nb-b", 3e-4)
    chart = live_chart(a.id, store)
    assert list(chart.charts.sources["loss"].data["step"]) == [1, 2, 3, 4, 5, 6]
    assert chart.runs.selected == a.id and chart.runs.status == "queued"
    view = compare_view([a.id, b.id], store)
    assert set(view.model.curves["loss"]) == {a.id, b.id}


def test_served_dashboard_answers_http(store):
    """`panel serve dashboards/studio.py` starts, builds a session and serves its page."""
    server = Server(REPO / "dashboards" / "studio.py", server_env(store)).start()
    try:
        status, page = server.get()
    finally:
        server.stop()
    assert status == 200
    assert "<title>Gemma fine-tuning studio</title>" in page
    assert 'id="theme-switch"' in page  # the served form: the template, with its theme toggle
    assert page.count("data-root-id") >= 1  # the session's document is in the page
    log = server.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_python_m_gemma_panel_ui_serves_the_template_in_a_thread(store, monkeypatch):
    """``serve_dashboard`` (``python -m gemma_panel.ui``) on a free port, in a thread."""
    import urllib.request

    from gemma_panel.ui.serve import serve_dashboard
    from tests.ui.conftest import free_port

    monkeypatch.setenv("GEMMA_PANEL_HOME", str(store.root))
    port = free_port()
    thread = serve_dashboard(port, threaded=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/studio",
                                            timeout=30) as response:
                    page = response.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        thread.stop()
    assert "Gemma fine-tuning studio" in page
    assert 'id="theme-switch"' in page  # served: create_app chose the template
