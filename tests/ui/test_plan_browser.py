"""The plan in a real headless browser: pick the quickstart data, see the recommendations and
the memory fit badge on Configure, press "Apply all", and the recipe changes.

The served studio starts from the tiny random Gemma's recipe (no 270M weights load); its
tokenizer is what the Data tab loads, and the plan measures the data with it.
"""

from __future__ import annotations

import time

from tests.ui.browser import BROWSER_MARKS, click_tab, launch, open_page, text_of
from tests.ui.conftest import wait_for

pytestmark = BROWSER_MARKS
QUICKSTART = "instruction/unit_conversions.jsonl"  # recipes/quickstart.yaml's data


def test_pick_the_data_see_the_plan_apply_all_and_the_recipe_changes(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = open_page(browser, server.url)
        started = time.monotonic()
        click_tab(page, "Data")
        page.locator("select").filter(has_text=QUICKSTART).first.select_option(
            label=QUICKSTART)
        click_tab(page, "Configure")
        epochs = wait_for(lambda: "recommended: 3" in (t := text_of(page, "gp-rec-train-epochs"))
                          and t, timeout=60, what="the epochs recommendation")
        assert "283 examples: 3 epochs" in epochs  # from the data: its training examples
        fit = wait_for(lambda: "Memory: FITS" in (t := text_of(page, "gp-plan-fit")) and t,
                       timeout=60, what="the fit badge")
        assert "GiB per device (single over 1; 1 x this machine" in fit
        assert "train.epochs=3.0" not in text_of(page, "gp-cli")  # the recipe says 100 steps
        page.locator(".gp-plan-apply-all button").click()
        cli = wait_for(lambda: "train.epochs=3.0" in (t := text_of(page, "gp-cli")) and t,
                       timeout=30, what="the recipe to change")
        assert "train.warmup_steps=" in cli and "eval.every_steps=" in cli
        wait_for(lambda: "set as recommended: 3" in text_of(page, "gp-rec-train-epochs"),
                 timeout=30, what="the field to show its recommended value")
        elapsed = time.monotonic() - started
        page.close()
        browser.close()
    assert elapsed < 40, f"the plan took {elapsed:.0f} s in the browser"
