"""The Export tab in a real headless browser: export a tiny-model run to GGUF, download it.

A real (tiny) run trains in a worker; ``gemma-panel dashboard`` serves the studio and its
download route; the browser opens the Export tab, exports to GGUF, downloads the file and the
folder's zip, and the SHA-256 of every downloaded file equals the manifest's.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

from gemma_panel.config import load_recipe
from gemma_panel.runs import submit
from tests.ui.browser import BROWSER_MARKS, click_tab, launch, open_page, shot, text_of
from tests.ui.conftest import (
    tiny_overrides,
    wait_finished,
    wait_for,
)

pytestmark = BROWSER_MARKS


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_export_a_run_to_gguf_and_download_it(store, tiny_gguf, dashboard, tmp_path):
    from playwright.sync_api import sync_playwright

    run = submit(load_recipe(None, ["name=tiny-export", *tiny_overrides(tiny_gguf, 4)]),
                 store)
    assert wait_finished(store, run.id, timeout=300).status == "succeeded"
    with sync_playwright() as p:
        browser = launch(p)
        page = open_page(browser, dashboard)
        click_tab(page, "Export")
        page.get_by_role("button", name="Export", exact=True).click()
        started = time.monotonic()
        wait_for(lambda: "Exported and verified" in text_of(page, "gp-export-status")
                 or "did not" in text_of(page, "gp-export-status")
                 or "failed" in text_of(page, "gp-export-status"), timeout=400, every=0.5,
                 what="the export to end")
        assert "Exported and verified: gguf-f16-step000004" in text_of(page, "gp-export-status"), \
            text_of(page, "gp-export-log")
        print(f"export from the tab: {time.monotonic() - started:.1f} s")
        wait_for(lambda: "gguf_dequantized_within_bound" in text_of(page, "gp-export-checks"),
                 timeout=30, what="the verification table")
        folder = Path(run.run_dir) / "exports" / "gguf-f16-step000004"
        manifest = json.loads((folder / "manifest.json").read_text())
        sums = {f["path"]: f["sha256"] for f in manifest["files"]}

        links = page.locator(".gp-export-downloads")
        with page.expect_download() as info:
            links.get_by_text("model.gguf", exact=True).click()
        saved = tmp_path / "model.gguf"
        info.value.save_as(saved)
        assert info.value.suggested_filename == "model.gguf"
        assert _sha256(saved) == sums["model.gguf"]

        with page.expect_download() as info:
            links.get_by_text("whole folder", exact=False).click()
        archive = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
        assert {name: hashlib.sha256(archive.read(name)).hexdigest() for name in sums} == sums
        shot(page, tmp_path, "export")
        browser.close()
