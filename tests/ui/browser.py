"""Driving the served studio in headless Debian chromium with Playwright (tests, benchmark,
scripts/screenshots.py).

Playwright never downloads a browser here: it launches /usr/bin/chromium
(``apt-get install chromium``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The marks of every real-browser test module (``pytestmark = BROWSER_MARKS``).
BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium "
                              "(apt-get install -y chromium)"),
]

# Records, in the page, when each new point of a streamed source arrives: window.__arrivals
# holds [step, Date.now()] pairs. Polls every 10 ms, well under the dashboard's 250 ms tick.
ARRIVALS_JS = """(name) => {
  window.__arrivals = [];
  let seen = 0;
  const find = () => {
    for (const d of Bokeh.documents) { const m = d.get_model_by_name(name); if (m) return m; }
    return null;
  };
  window.__arrivalTimer = setInterval(() => {
    const s = find(); if (!s) return;
    const steps = s.data.step || []; const n = steps.length;
    if (n > seen) {
      const now = Date.now();
      for (let i = seen; i < n; i++) window.__arrivals.push([steps[i], now]);
    }
    seen = n;
  }, 10);
}"""

SOURCE_LENGTH_JS = """(name) => {
  if (!window.Bokeh) return -1;
  for (const d of Bokeh.documents) {
    const m = d.get_model_by_name(name);
    if (m) return (m.data.step || m.data.x || []).length;
  }
  return -1;
}"""

# The page is ready when its document has arrived and the first tab is drawn (tabs are
# dynamic: another tab's models arrive when it is opened).
READY_JS = """() => window.Bokeh !== undefined && Bokeh.documents.length > 0 &&
  document.querySelector('[data-root-id]') !== null &&
  Bokeh.documents[0].get_model_by_name('token-histogram') !== null"""

TAB_READY_JS = """(name) => Bokeh.documents[0].get_model_by_name(name) !== null"""

# The model that is in the document once each tab is drawn.
TAB_MARKERS = {"Data": "token-histogram", "Train": "train-loss", "Configure": None,
               "Compare": None}


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                      headless=True)


def open_page(browser, url: str, timeout_ms: int = 60_000):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_function(READY_JS)
    return page


def click_tab(page, title: str) -> None:
    page.locator(".bk-tab", has_text=title).first.click()
    marker = TAB_MARKERS.get(title)
    if marker:
        page.wait_for_function(TAB_READY_JS, arg=marker)


def pick_compare_runs(page, run_ids) -> None:
    """On the Compare tab, type each run id into the run picker and pick it."""
    for run_id in run_ids:
        box = page.locator(".choices__input--cloned").filter(visible=True).first
        box.click()
        box.fill(run_id)
        box.press("Enter")


def has_text(page, text: str, timeout_ms: int = 30_000) -> bool:
    """Does ``text`` appear in the page within ``timeout_ms``? Panel draws a tab's panes one
    by one after the tab shows, so a text may arrive after the one a test waited for."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(text).first.wait_for(state="attached", timeout=timeout_ms)
    except PlaywrightTimeout:
        return False
    return True


TEXT_JS = """(e) => Array.from((e.shadowRoot || e).children)
  .filter(c => !['STYLE', 'LINK', 'SCRIPT'].includes(c.tagName))
  .map(c => c.innerText || '').join(' ')"""


def text_of(page, css_class: str) -> str:
    """The visible text of a Panel pane with this css class ('' when there is none).

    Panel renders each pane's content in the shadow root of an element that carries the
    pane's css_classes; the element's own innerText does not include it.
    """
    found = page.locator(f".{css_class}")
    if not found.count():
        return ""
    return " ".join(found.nth(i).evaluate(TEXT_JS) for i in range(found.count()))


def source_length(page, name: str) -> int:
    return page.evaluate(SOURCE_LENGTH_JS, name)


def shot(page, folder: Path, name: str, height: int = 2000) -> Path:
    """Save ``folder/name.png``; the template scrolls inside itself, so make the window tall.

    Tests pass a temporary folder; only scripts/screenshots.py writes docs/screenshots.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": height})
    page.wait_for_timeout(500)  # let the layout settle at the new size
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path
