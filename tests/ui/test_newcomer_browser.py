"""The Configure tab for a newcomer in a real headless browser: the first fields are on
top, an advanced field is found by searching its help text, changing it marks it, its reset
clears the mark, and the run the Train tab's Start queues has the values the page shows.
"""

from __future__ import annotations

import yaml

from gemma_panel.runs.queue import cancel
from gemma_panel.ui.config_fields import BASIC_FIELDS
from tests.ui.browser import BROWSER_MARKS, click_tab, open_page, text_of
from tests.ui.conftest import wait_finished, wait_for

pytestmark = BROWSER_MARKS


def _row(page, path: str):
    return page.locator(f".gp-field-{path.replace('.', '-')}").first


def _type(page, path: str, value: str) -> None:
    box = _row(page, path).locator("input").first
    box.fill(value)
    box.press("Enter")


def test_basics_first_search_mark_reset_and_start_uses_the_page(browser, server, store):
    page = open_page(browser, server.url)
    click_tab(page, "Configure")
    for path in BASIC_FIELDS:
        _row(page, path).wait_for(state="visible", timeout=30_000)
    decay, schedule = _row(page, "train.weight_decay"), _row(page, "train.schedule")
    assert not decay.is_visible()  # Advanced sections start closed
    page.locator(".gp-config-search input").fill("decoupled")  # words of its help text
    wait_for(lambda: "1 of" in text_of(page, "gp-search-note"), timeout=60,
             what="the search to find one field")
    decay.wait_for(state="visible", timeout=60_000)
    schedule.wait_for(state="hidden", timeout=60_000)  # the search hides what it does not find

    mark = page.locator(".gp-changed-train-weight_decay").first
    assert not mark.is_visible()
    _type(page, "train.weight_decay", "0.05")
    mark.wait_for(state="visible", timeout=60_000)
    wait_for(lambda: "train.weight_decay" in text_of(page, "gp-changed-summary"), timeout=60,
             what="the changed field in the summary")
    _type(page, "lora.rank", "16")
    wait_for(lambda: "lora.rank" in text_of(page, "gp-changed-summary"), timeout=60,
             what="the rank in the summary")
    page.locator(".gp-reset-train-weight_decay button").click()
    mark.wait_for(state="hidden", timeout=60_000)
    wait_for(lambda: _row(page, "train.weight_decay").locator("input").first.input_value()
             == "0.01", timeout=60, what="the default back in the box")
    assert "train.weight_decay" not in text_of(page, "gp-changed-summary")

    click_tab(page, "Train")
    page.get_by_role("button", name="Start a run with this recipe").click()
    run = wait_for(lambda: store.list_runs() and store.list_runs()[0], timeout=60,
                   what="the run to be queued")
    cancel(run.id, store)
    recipe = yaml.safe_load(run.recipe_yaml)
    assert recipe["lora"]["rank"] == 16 and recipe["train"]["weight_decay"] == 0.01

    click_tab(page, "Configure")
    page.locator(".gp-reset-all button").click()
    wait_for(lambda: "(0)" in text_of(page, "gp-changed-summary"), timeout=30,
             what="reset all to clear every mark")
    assert _row(page, "lora.rank").locator("input").first.input_value() == "8"
    page.close()
    wait_finished(store, run.id, timeout=120)
