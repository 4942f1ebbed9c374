"""The Train tab's run list in a real headless browser: rename a run, then delete it through
the confirmation step (the store and the run's folder follow)."""

from __future__ import annotations

from tests.ui.browser import BROWSER_MARKS, click_tab, launch, open_page, shot, text_of
from tests.ui.conftest import fake_recipe, wait_for

pytestmark = BROWSER_MARKS


def test_rename_then_delete_a_run_from_the_train_tab(store, dashboard, tmp_path):
    from playwright.sync_api import sync_playwright

    run = store.create_run(fake_recipe(name="before"))
    store.request_cancel(run.id)
    with sync_playwright() as p:
        browser = launch(p)
        page = open_page(browser, dashboard)
        click_tab(page, "Train")
        name = page.locator(".gp-run-name input")
        wait_for(lambda: name.input_value() == "before", timeout=30, what="the run's name")
        name.fill("renamed in the browser")
        name.press("Enter")
        page.get_by_role("button", name="Save name, notes and tags").click()
        wait_for(lambda: store.get(run.id).name == "renamed in the browser", timeout=30,
                 what="the rename to reach the store")
        page.get_by_role("button", name="Delete run ...").click()
        wait_for(lambda: "cannot be undone" in text_of(page, "gp-delete-question"),
                 timeout=30, what="the confirmation question")
        assert store.get(run.id).status == "cancelled"  # asked, not yet deleted
        page.get_by_role("button", name="Yes, delete it").click()
        folder = store.folder(run.id).path
        wait_for(lambda: not store.list_runs() and not folder.exists(), timeout=30,
                 what="the delete (rows, then the folder)")
        wait_for(lambda: f"Deleted {run.id}" in text_of(page, "gp-notice"), timeout=30,
                 what="the notice")
        shot(page, tmp_path, "runs")
        browser.close()
