"""Every shipped example, as a new user meets it: pick it, check it, start a run.

The served studio starts from a recipe that says `template: gemma` (as the quickstart
does) and the tiny random Gemma. For each file of examples/ in turn, the Data tab must
carry the template the file needs into the recipe and say "ready to train" only when
it is; Start must then queue a run whose worker gets past data preparation (its total
step count is recorded, which the trainer does once the data is prepared). Before the
shared preflight, topics.csv was "ready to train" and its run failed at once with "the
chat template needs a response".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gemma_panel.config import load_recipe, recipe_to_yaml
from gemma_panel.data.preflight import preflight
from gemma_panel.runs import statuses as st
from gemma_panel.ui.data_checks import example_datasets
from tests.ui.browser import BROWSER_MARKS, click_tab, launch, open_page, text_of
from tests.ui.conftest import (
    SERVED_APP,
    Server,
    server_env,
    tiny_overrides,
    wait_finished,
    wait_for,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def chat_recipe_path(tmp_path, tiny_gguf):
    """The tiny model's recipe with the quickstart's chat template.

    256 tokens: the tiny tokenizer makes about 115 of a topics.csv prompt, so the 64 of
    the other tiny-model tests would (rightly) be refused for it.
    """
    recipe = load_recipe(None, ["name=example", *tiny_overrides(tiny_gguf, 100000),
                                "data.template=gemma", "data.sequence_length=256"])
    path = tmp_path / "chat.yaml"
    path.write_text(recipe_to_yaml(recipe))
    return path


@pytest.fixture
def server(store, chat_recipe_path):
    srv = Server(SERVED_APP, server_env(store, GP_TEST_RECIPE=str(chat_recipe_path))).start()
    yield srv
    srv.stop()


def _past_data_step(store, run_id: str):
    run = store.get(run_id)
    if run.status == st.FAILED or run.total_steps is not None or run.status in st.FINISHED:
        return run
    return None


def _check_and_start(page, store, label: str, path: str, template: str) -> None:
    """Pick one example on the Data tab, read its verdict, start it, see the data step pass."""
    click_tab(page, "Data")
    page.locator("select").filter(has_text=label).first.select_option(label=label)
    name = Path(path).name

    def verdict() -> str:
        text = text_of(page, "gp-data-status")
        return text if name in text and ("Ready to train" in text or "NOT ready" in text) \
            else ""

    status = wait_for(verdict, timeout=120, what=f"the verdict on {label}")
    assert "Ready to train" in status and "NOT ready" not in status, status
    click_tab(page, "Train")
    wait_for(lambda: "ready to train" in text_of(page, "gp-data-verdict").lower()
             or "fits the recipe" in text_of(page, "gp-data-verdict"), timeout=60,
             what=f"the Train tab's data verdict on {label}")
    before = {r.id for r in store.list_runs()}
    page.get_by_role("button", name="Start a run with this recipe").click()
    new = wait_for(lambda: [r for r in store.list_runs() if r.id not in before],
                   timeout=120, what=f"a run of {label} to be queued")[0]
    run = wait_for(lambda: _past_data_step(store, new.id), timeout=240,
                   what=f"the run of {label} past its data step")
    assert run.status != st.FAILED, f"{label}: {run.message}"
    data = yaml.safe_load(run.recipe_yaml)["data"]
    assert data["train_path"] == path and data["template"] == template
    page.get_by_role("button", name="Cancel", exact=True).click()
    wait_finished(store, run.id, timeout=120)


def _wrong_template_is_refused_and_fixed(page, store, needed: str) -> None:
    """The chat template put back on Configure: Start refuses, the fix is one click."""
    click_tab(page, "Configure")
    template = page.locator("select").filter(has_text="completion").filter(has_text="auto")
    template.first.select_option("gemma")
    click_tab(page, "Train")
    wait_for(lambda: "NOT ready" in text_of(page, "gp-data-verdict"), timeout=60,
             what="the Train tab's verdict on the wrong template")
    runs = len(store.list_runs())
    page.get_by_role("button", name="Start a run with this recipe").click()
    wait_for(lambda: "Not started" in text_of(page, "gp-notice"), timeout=120,
             what="Start to refuse the recipe")
    assert f"set data.template to {needed}" in text_of(page, "gp-notice")
    assert len(store.list_runs()) == runs  # no run was made
    page.get_by_role("button", name=f"Set data.template to {needed}").click()
    wait_for(lambda: "NOT ready" not in (t := text_of(page, "gp-data-verdict")) and
             ("ready to train" in t or "fits the recipe" in t), timeout=60,
             what="the verdict after the fix")


def test_every_shipped_example_checks_and_its_run_passes_data_preparation(store, server):
    from playwright.sync_api import sync_playwright

    examples = example_datasets()
    assert len(examples) >= 3  # classification, instruction and plain text
    expected = {label: preflight(load_recipe(None, [f"data.train_path={path}"])).template
                for label, path in examples.items()}  # what auto picks for each
    assert expected["classification/topics.csv"] == "classification"
    with sync_playwright() as p:
        browser = launch(p)
        page = open_page(browser, server.url)
        for label, path in examples.items():
            _check_and_start(page, store, label, path, expected[label])
        _wrong_template_is_refused_and_fixed(page, store, expected[label])
        page.close()
        browser.close()
