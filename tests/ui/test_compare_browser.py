"""The Compare tab's metrics table in a real browser: a row for every run picked, however
close together the picks reach the page.

A Panel Tabulator once dropped rows that arrived while it rebuilt for new columns
(tabulator.ts ``setData`` returns early while ``_building``): two runs picked quickly showed
one row. The tables are HTML now (compare_view.py). Here three runs, each with a metric more
than the one before (so every pick changes the columns too), are picked within one browser
task on a page slowed 20x. With Panel 1.9.4 the Tabulator kept all rows even so: the race
itself did not reproduce, so this guards a row per run, not the Tabulator's bug.
"""

from __future__ import annotations

from gemma_panel.runs import StoreSink
from tests.ui.browser import BROWSER_MARKS, TEXT_JS, click_tab, open_page, text_of
from tests.ui.conftest import fake_recipe, wait_for

pytestmark = BROWSER_MARKS

# Pick runs one after the other in one task: [a], then [a, b], then [a, b, c]: each a
# change of the run picker's value, sent to the server as its own message.
PICK_AT_ONCE_JS = """(ids) => {
  const models = [...Bokeh.documents[0]._all_models.values()];
  const chooser = models.find(m => m.constructor.__name__ === 'MultiChoice'
      && (m.options || []).some(o => (Array.isArray(o) ? o[0] : o) === ids[0]));
  for (let n = 1; n <= ids.length; n++) chooser.value = ids.slice(0, n);
}"""


def test_runs_picked_in_one_moment_each_get_a_metrics_row(browser, server, store):
    # Each run has a metric more than the one before: every pick changes the columns too.
    names = ("loss", "val_loss", "accuracy")
    runs = []
    for i, lr in enumerate((3e-4, 2e-4, 1e-4)):
        run = store.create_run(fake_recipe(f"train.learning_rate={lr}", name=f"lr{i}"))
        with StoreSink(store, run.id) as sink:
            for step in (1, 2, 3):
                sink.on_metrics(step, step * 8, {n: 1.0 / step for n in names[:i + 1]})
        runs.append(run)
    ids = [run.id for run in runs]
    page = open_page(browser, server.url)
    click_tab(page, "Compare")
    wait_for(lambda: page.evaluate("""(id) => [...Bokeh.documents[0]._all_models.values()]
        .some(m => m.constructor.__name__ === 'MultiChoice' && (m.options || [])
        .some(o => (Array.isArray(o) ? o[0] : o) === id))""", ids[0]), timeout=30,
             what="the run picker offering the runs")
    # A slow page (the CPU throttled 20x) is still building the table for the first pick's
    # columns when the next picks' rows arrive: the order that lost them, every time.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 20})
    page.evaluate(PICK_AT_ONCE_JS, ids)
    wait_for(lambda: "3 run(s)" in text_of(page, "gp-compare-message"), timeout=30,
             what="the comparison of three runs")
    page.wait_for_timeout(1500)  # every change has reached the page and been drawn
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})

    def missing() -> list[str]:  # the metrics table is the first of the tab's tables
        shown = page.locator(".gp-compare-table").first.evaluate(TEXT_JS)
        return [run_id for run_id in ids if run_id not in shown]

    wait_for(lambda: not missing(), timeout=10,
             what=f"a metrics row per run; missing {missing()}")
    rows = page.locator(".gp-compare-table").first.locator("tbody tr")
    assert sorted(text.split()[0] for text in rows.all_inner_texts()) == sorted(ids)
    page.close()
