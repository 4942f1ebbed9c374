"""The Export tab in a real headless browser: export a tiny-model run, download it.

A real (tiny) run trains in a worker; ``gemma-panel dashboard`` serves the studio and its
download route; the browser opens the Export tab, exports to GGUF, downloads the file and the
folder's zip, and the SHA-256 of every downloaded file equals the manifest's. Then, on the
same page, it exports to Hugging Face, downloads that folder's zip, and transformers loads
the unzipped folder with logits equal to the tuned Keras model's (from the run's checkpoint).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gemma_panel.config import load_recipe
from gemma_panel.runs import submit
from tests.ui.browser import BROWSER_MARKS, click_tab, launch, open_page, shot, text_of
from tests.ui.conftest import (
    tiny_overrides,
    wait_finished,
    wait_for,
)

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """The tiny Gemma without its tokenizer's odd two-space piece, which transformers matches
    and SentencePiece never does (tests/models/tiny_gguf.py), so its Hugging Face export
    verifies."""
    from tests.models.tiny_gguf import write_tiny_gemma_gguf

    return write_tiny_gemma_gguf(tmp_path_factory.mktemp("tiny") / "tiny-gemma3.gguf",
                                 "gemma3", hidden=64, heads=2, kv_heads=1, head_dim=256,
                                 ffn=128, layers=2, space_piece=False)


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _export_from_tab(page, fmt: str, folder: str) -> None:
    """Pick ``fmt`` in the Export tab, export, and wait for the verdict on ``folder``."""
    page.locator(".bk-input-group", has_text="Format").locator("select").select_option(fmt)
    page.get_by_role("button", name="Export", exact=True).click()
    started = time.monotonic()
    wait_for(lambda: f"verified: {folder}" in text_of(page, "gp-export-status")
             or "did not" in text_of(page, "gp-export-status")
             or "failed" in text_of(page, "gp-export-status"), timeout=400, every=0.5,
             what=f"the export to {fmt} to end")
    assert f"Exported and verified: {folder}" in text_of(page, "gp-export-status"), \
        text_of(page, "gp-export-log")
    print(f"export to {fmt} from the tab: {time.monotonic() - started:.1f} s")


def _download_zip(page, folder: str) -> zipfile.ZipFile:
    links = page.locator(".gp-export-downloads")
    with page.expect_download() as info:
        links.get_by_text(f"{folder}.zip (the whole folder", exact=False).click()
    assert info.value.suggested_filename == f"{folder}.zip"
    return zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))


def test_export_a_run_to_gguf_and_hf_and_download_them(store, tiny_gguf, dashboard, tmp_path):
    from playwright.sync_api import sync_playwright

    run = submit(load_recipe(None, ["name=tiny-export", *tiny_overrides(tiny_gguf, 4)]),
                 store)
    assert wait_finished(store, run.id, timeout=300).status == "succeeded"
    with sync_playwright() as p:
        browser = launch(p)
        page = open_page(browser, dashboard)
        click_tab(page, "Export")
        _export_from_tab(page, "gguf", "gguf-f16-step000004")
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

        archive = _download_zip(page, "gguf-f16-step000004")
        assert {name: hashlib.sha256(archive.read(name)).hexdigest() for name in sums} == sums
        shot(page, tmp_path, "export")

        # The same run to Hugging Face, its folder downloaded as a zip and unzipped here.
        _export_from_tab(page, "hf", "hf-step000004")
        wait_for(lambda: "hf-step000004.zip" in text_of(page, "gp-export-downloads"),
                 timeout=30, what="the Hugging Face export's downloads")
        archive = _download_zip(page, "hf-step000004")
        browser.close()
    archive.extractall(tmp_path / "hf")
    manifest = json.loads((tmp_path / "hf" / "manifest.json").read_text())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        f["path"]: _sha256(tmp_path / "hf" / f["path"]) for f in manifest["files"]}
    _assert_transformers_loads_the_tuned_model(run, tmp_path / "hf", manifest)


def _assert_transformers_loads_the_tuned_model(run, folder: Path, manifest: dict) -> None:
    """transformers' logits of the unzipped folder equal the tuned Keras model's (the run's
    checkpoint through the project's loader) within the manifest's bound, and are not the
    base model's."""
    import torch
    import transformers

    from gemma_panel.export import load_run_model
    from gemma_panel.export.verify import keras_logits
    from gemma_panel.training import load_tuned_model

    tuned = load_run_model(run.run_dir, step=4, with_validation=False).lm
    text = "How many meters are in 3 kilometers?"
    keras_tokenizer = tuned.preprocessor.tokenizer
    ids = [keras_tokenizer.start_token_id,
           *(int(i) for i in np.asarray(keras_tokenizer(text)).reshape(-1))]
    if (folder / "tokenizer_config.json").is_file():  # the export's own tokenizer agrees
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        assert tokenizer(text)["input_ids"] == ids
    ids = np.array([ids], dtype="int32")
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        theirs = model(torch.from_numpy(ids).long()).logits.float().numpy()
    checks = {c["name"]: c for c in manifest["verification"]["checks"]}
    bound = checks["transformers_logits"]["tolerance"]
    assert bound <= 1e-3
    diff = float(np.abs(theirs - keras_logits(tuned, ids)).max())
    assert diff <= bound, f"transformers' logits differ from the tuned model's by {diff:.3g}"
    base = keras_logits(load_tuned_model(load_recipe(Path(run.run_dir) / "recipe.yaml")), ids)
    away = float(np.abs(theirs - base).max())  # the check tells the tuned from the base
    assert away > 10 * bound, f"the tuned model is {away:.3g} from the base only"
