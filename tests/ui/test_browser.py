"""The served studio in a real headless browser (Debian's chromium through Playwright).

Upload a dataset and read its report; start a run on a tiny Gemma and see its loss points
on the chart within 2 s of being recorded; cancel it; reload the page and restart the server
and see the same history; compare two runs. Each test saves a screenshot of its tab into a
temporary folder (the docs' screenshots come from scripts/screenshots.py: a real Gemma 3
270M run).
"""

from __future__ import annotations

import time

import pytest

from gemma_panel.runs import submit
from tests.ui.browser import (
    ARRIVALS_JS,
    BROWSER_MARKS,
    READY_JS,
    click_tab,
    has_text,
    open_page,
    pick_compare_runs,
    shot,
    source_length,
    text_of,
)
from tests.ui.conftest import (
    FAKE,
    TOPICS,
    fake_recipe,
    wait_finished,
    wait_for,
)

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where this module's screenshots go: a temporary folder, never docs/."""
    return tmp_path_factory.mktemp("screenshots")


def test_upload_an_example_and_see_its_report(browser, server, shots):
    page = open_page(browser, server.url)
    page.locator("input.filepond--browser").set_input_files(str(TOPICS))
    wait_for(lambda: "160 usable" in text_of(page, "gp-report"), timeout=60,
             what="the report")
    text = text_of(page, "gp-report")
    assert "classification" in text and "0 errors" in text and "topics.csv" in text
    # Token lengths measured with the recipe's (tiny) model: the histogram has bars.
    wait_for(lambda: "Tokens (" in text_of(page, "gp-data-status"), timeout=120,
             what="token statistics")
    bars = page.evaluate("() => Bokeh.documents[0].get_model_by_name("
                         "'token-histogram-source').data.top.length")
    assert bars > 0
    assert has_text(page, "Green: trained on")
    # The sequence length typed here is the recipe's: tokens are measured again with it.
    length = page.locator(".bk-input-group", has_text="Sequence length").locator("input")
    length.fill("128")
    length.press("Enter")
    wait_for(lambda: "0 cut at 128" in text_of(page, "gp-data-status"), timeout=120,
             what="token statistics at 128")
    cutoff = "() => Bokeh.documents[0].get_model_by_name('cutoff').location"
    wait_for(lambda: page.evaluate(cutoff) == 128, timeout=30,  # drawn after the text
             what=f"the cutoff line at 128; it is at {page.evaluate(cutoff)}")
    click_tab(page, "Configure")
    wait_for(lambda: "data.sequence_length=128" in text_of(page, "gp-cli"), timeout=20,
             what="the CLI command with the new sequence length")
    click_tab(page, "Data")
    shot(page, shots, "data")
    click_tab(page, "Configure")
    page.get_by_text("The same run from a terminal").wait_for()
    assert has_text(page, "Peak learning rate of AdamW")
    shot(page, shots, "configure")
    page.close()


def _latencies(page, store, run_id: str, since: float) -> list[float]:
    """Seconds from each loss point's recording (in the worker) to its arrival in the page."""
    arrivals = {}
    for step, at_ms in page.evaluate("() => window.__arrivals"):
        arrivals.setdefault(step, at_ms / 1000)
    recorded = {p.step: p.time for p in store.metrics(run_id, names=["loss"])}
    return [arrivals[s] - t for s, t in recorded.items() if s in arrivals and t > since]


def _evaluations(page) -> dict[int, float]:
    """Step -> value of the validation token accuracy on the Train tab's evaluation chart."""
    return {int(step): value for step, value in page.evaluate("""() => {
        const s = Bokeh.documents[0].get_model_by_name('train-val_token_accuracy');
        return Array.from(s.data.step, (step, i) => [step, s.data.value[i]]);
    }""")}


def test_train_live_cancel_reload_and_restart(browser, server, store, shots):
    page = open_page(browser, server.url)
    click_tab(page, "Train")
    page.evaluate(ARRIVALS_JS, "train-loss")
    page.get_by_role("button", name="Start a run with this recipe").click()
    run = wait_for(lambda: store.list_runs() and store.list_runs()[0], timeout=30,
                   what="the run to be queued")
    def status() -> str:
        return text_of(page, "gp-run-status")

    wait_for(lambda: run.id in status(), timeout=30, what="the run to be shown")
    shown_at = time.time()
    # The evaluation chart has the base model's evaluation (step 0) as training starts...
    wait_for(lambda: 0 in _evaluations(page), timeout=60, every=0.2,
             what="step 0's evaluation on the evaluation chart")
    # Loss points appear on the chart as the worker records them.
    wait_for(lambda: len(page.evaluate("() => window.__arrivals")) >= 40, timeout=180,
             every=0.2, what="40 loss points on the chart")
    late = sorted(_latencies(page, store, run.id, shown_at))
    assert len(late) >= 30
    assert late[-1] < 2.0, f"slowest point took {late[-1]:.2f} s; all: {late}"
    # ... and gains step 40's (eval.every_steps=40) while the run goes on, as recorded.
    wait_for(lambda: 40 in _evaluations(page), timeout=60, every=0.2,
             what="step 40's evaluation on the evaluation chart")
    assert "running" in status()
    shown = _evaluations(page)  # points arrive in order: all recorded up to the last shown
    recorded = {p.step: p.value for p in store.metrics(run.id, names=["val_token_accuracy"])}
    assert shown == {s: v for s, v in recorded.items() if s <= max(shown)}
    wait_for(lambda: "running" in status(), timeout=10, what="running status")
    page.get_by_role("button", name="Cancel", exact=True).click()
    done = wait_finished(store, run.id, timeout=120)
    assert done.status == "cancelled"
    wait_for(lambda: "cancelled" in status(), timeout=10, what="cancelled status")
    assert "checkpoint saved" in status()
    shot(page, shots, "train")

    from gemma_panel.runs.compare import current_points

    total = len(current_points(store.metrics(run.id, names=["loss"])))
    page.reload()
    page.wait_for_function(READY_JS)
    click_tab(page, "Train")
    wait_for(lambda: source_length(page, "train-loss") == total, timeout=30,
             what=f"the whole history ({total} points) after a reload")

    server.stop()
    server.start()
    page.reload()
    page.wait_for_function(READY_JS)
    click_tab(page, "Train")
    wait_for(lambda: source_length(page, "train-loss") == total, timeout=60,
             what="the whole history after a server restart")
    assert run.id in status()
    page.close()


def test_compare_two_runs(browser, server, store, monkeypatch, shots):
    monkeypatch.setenv("FAKE_STEP_S", "0.01")
    a = submit(fake_recipe("train.learning_rate=3e-4", name="high"), store, trainer=FAKE)
    b = submit(fake_recipe("train.learning_rate=1e-4", name="low"), store, trainer=FAKE)
    for run in (a, b):
        assert wait_finished(store, run.id).status == "succeeded"
    page = open_page(browser, server.url)
    click_tab(page, "Compare")
    pick_compare_runs(page, [a.id, b.id])
    def message() -> str:
        return text_of(page, "gp-compare-message")

    wait_for(lambda: "2 run(s)" in message(), timeout=30, what="the comparison")
    assert "2 setting(s) differ" in message()  # the name and train.learning_rate
    page.locator(".bk-btn", has_text="tokens").filter(visible=True).first.click()
    wait_for(lambda: "by tokens" in message(), timeout=10, what="tokens axis")
    assert has_text(page, "train.learning_rate")
    # One line per run, every step, and a metrics row per run (a Tabulator once kept the
    # first pick's single row: it drops data that arrives while it rebuilds its columns).
    wait_for(lambda: _lines(page) == {a.id: 12, b.id: 12}, timeout=10,
             what=f"a line per run; the page has {_lines(page)}")
    metrics = page.locator(".gp-compare-table").first.locator("tbody tr")
    wait_for(lambda: metrics.count() == 2, timeout=10,
             what=f"a metrics row per run; the page has {metrics.all_inner_texts()}")
    assert {text.split()[0] for text in metrics.all_inner_texts()} == {a.id, b.id}
    shot(page, shots, "compare")
    assert _luminance(page, "document.body") > 0.7  # the default theme is light
    page.close()
    # The template's dark theme: the page and the Bokeh charts turn dark.
    dark = open_page(browser, server.url + "?theme=dark")
    click_tab(dark, "Train")
    assert _luminance(dark, "document.body") < 0.3
    assert dark.evaluate("() => Bokeh.documents[0].get_model_by_name('chart-loss')"
                         ".background_fill_color") not in ("#ffffff", "white")
    shot(dark, shots, "train-dark")
    dark.close()


def _lines(page) -> dict[str, int]:
    """Run id -> points of its line on the compare loss chart."""
    return page.evaluate("""() => {
        const s = Bokeh.documents[0].get_model_by_name('compare-loss');
        return Object.fromEntries(s.data.run.map((r, i) => [r, s.data.xs[i].length]));
    }""")


def _luminance(page, element: str) -> float:
    """0 (black) to 1 (white): the computed background colour of an element."""
    rgb = page.evaluate(f"() => getComputedStyle({element}).backgroundColor")
    r, g, b = (float(v) for v in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
