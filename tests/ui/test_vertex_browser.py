"""The "Run on Vertex AI" tab in a real headless browser: show the plan, confirm, see the job
in the Train tab's list, cancel it there.

The studio is served in a child process that inherits the test's environment: its storage
calls go to gcp-storage-emulator and its Vertex AI calls to the loopback JobService, both
served by this process on 127.0.0.1.
"""

# ruff: noqa: F811 - the cloud fixtures (gcs, vertex_api) are imported by name
from __future__ import annotations

from gemma_panel.config import load_recipe, recipe_to_yaml
from tests.cloud.fixtures import emulator, gcs, vertex_api  # noqa: F401 - fixtures, by name
from tests.ui.browser import BROWSER_MARKS, click_tab, launch, open_page, shot, text_of
from tests.ui.conftest import (
    SERVED_APP,
    UNIT_CONVERSIONS,
    Server,
    server_env,
    tiny_overrides,
    wait_for,
)

pytestmark = BROWSER_MARKS


def test_plan_confirm_and_see_the_job_in_the_run_list(store, tiny_gguf, gcs, vertex_api,
                                                      tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    _, bucket = gcs
    bucket.blob("d/train.jsonl").upload_from_filename(str(UNIT_CONVERSIONS))
    recipe = load_recipe(None, ["name=tiny-vertex", *tiny_overrides(tiny_gguf, 20),
                                f"data.train_path=gs://{bucket.name}/d/train.jsonl"])
    path = tmp_path / "tiny-vertex.yaml"
    path.write_text(recipe_to_yaml(recipe))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p1")
    monkeypatch.setenv("GEMMA_PANEL_CLOUD_OUTPUT", f"gs://{bucket.name}/jobs")
    server = Server(SERVED_APP, server_env(store, GP_TEST_RECIPE=str(path))).start()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = open_page(browser, server.url)
            click_tab(page, "Vertex AI")
            page.locator(".gp-vertex-show button").click()
            def planned_or_refused():
                said = text_of(page, "gp-vertex-status").strip()
                refused = said and not said.startswith(("Checking", "Nothing is sent"))
                return refused or "estimate for" in text_of(page, "gp-vertex-plan")
            wait_for(planned_or_refused, timeout=120, every=0.5, what="the plan")
            plan = text_of(page, "gp-vertex-plan")
            assert "estimate for tpu-v5e-4" in plan, text_of(page, "gp-vertex-status")
            assert "cost: ~$" in plan and "memory:" in plan
            assert "FITS" in text_of(page, "gp-vertex-fit")
            assert "Nothing is sent yet" in text_of(page, "gp-vertex-status")
            assert [c for c in vertex_api.calls if c[0] == "POST"] == []
            shot(page, tmp_path, "vertex-plan")

            page.get_by_role("button", name="Confirm and submit").click()
            wait_for(lambda: "Submitted" in text_of(page, "gp-vertex-status"), timeout=120,
                     every=0.5, what="the submit")
            (run,) = store.list_runs()
            assert run.backend == "vertex" and run.job_name in vertex_api.jobs
            click_tab(page, "Train")
            wait_for(lambda: run.id in text_of(page, "gp-run-status"), timeout=30,
                     what="the job's run, selected in the Train tab")
            assert "queued" in text_of(page, "gp-run-status")
            page.get_by_role("button", name="Cancel", exact=True).click()
            wait_for(lambda: store.get(run.id).status == "cancelled", timeout=30,
                     what="the job's cancel")
            assert ("POST", f"/v1/{run.job_name}:cancel") in [c[:2] for c in vertex_api.calls]
            browser.close()
    finally:
        server.stop()
