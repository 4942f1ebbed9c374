"""The Chat tab in a real headless browser: base and tuned answers stream side by side.

A tiny LoRA run whose tuned model differs from its base (random LoRA ``B`` factors, see
tests/chat/tiny_run.py) sits in the store; ``gemma-panel dashboard`` serves the studio, whose
chat worker process loads the run once. One tab asks a sampled question (the two answers
differ), then a long greedy one that it stops midway, while a second tab asks its own
question at the same time and gets both answers before the first tab's are done.
"""

from __future__ import annotations

import time

from tests.chat.tiny_run import STEP, tiny_recipe, write_tuned_checkpoint
from tests.ui.browser import BROWSER_MARKS, click_tab, launch, open_page, text_of
from tests.ui.conftest import wait_for

pytestmark = BROWSER_MARKS
LONG = 4096  # tokens: far more than the seconds the test lets it run


def _chat_tab(page) -> None:
    click_tab(page, "Chat")
    page.locator(".gp-chat-status").first.wait_for(state="attached")


def _set(page, label: str, value) -> None:
    box = page.locator(".bk-input-group", has_text=label).locator("input").first
    box.fill(str(value))
    box.press("Enter")


def _send(page, message: str, *, greedy: bool, max_tokens: int) -> None:
    greedy_box = page.locator(".bk-Checkbox").locator("input[type=checkbox]").first
    greedy_box.set_checked(greedy)
    if not greedy:
        _set(page, "Temperature", 10)  # the tiny random model repeats itself below that
    _set(page, "Max new tokens", max_tokens)
    box = page.locator(".bk-input-group", has_text="Message").locator("textarea").first
    box.fill(message)
    box.press("Tab")
    page.get_by_role("button", name="Send", exact=True).click()


def _answer(page, side: str) -> str:
    """The column's text after the last 'You:' line (innerText keeps its newlines)."""
    return text_of(page, f"gp-chat-{side}").rsplit("You:", 1)[-1].split("\n", 1)[-1]


def _answered(page) -> bool:
    return "Answered" in text_of(page, "gp-chat-status")


def test_chat_streams_both_columns_stops_midway_and_serves_two_tabs(
        store, tiny_gguf, dashboard):
    from playwright.sync_api import sync_playwright

    recipe = tiny_recipe(tiny_gguf, name="tiny-chat")
    run = store.create_run(recipe)
    write_tuned_checkpoint(recipe, run.run_dir)
    with sync_playwright() as p:
        browser = launch(p)
        page, other = open_page(browser, dashboard), open_page(browser, dashboard)
        for tab in (page, other):
            _chat_tab(tab)
            assert "no system role" in text_of(tab, "gp-chat-note")
        _send(page, "How many grams are in a kilogram?", greedy=False, max_tokens=24)
        wait_for(lambda: _answered(page), timeout=240, every=0.25, what="the first answers")
        base, tuned = _answer(page, "base"), _answer(page, "tuned")
        assert base.strip() and tuned.strip() and base != tuned, (base, tuned)

        started = time.monotonic()
        _send(page, "And in a tonne?", greedy=True, max_tokens=LONG)
        lengths = []  # the greedy answer is newlines: count characters, not words
        wait_for(lambda: lengths.append(min(len(_answer(page, s)) for s in ("base", "tuned")))
                 or (len(lengths) > 2 and 0 < lengths[-3] < lengths[-1]), timeout=60, every=0.3,
                 what="both columns to grow")
        _send(other, "What is a litre?", greedy=False, max_tokens=8)  # the second tab, now
        wait_for(lambda: _answered(other), timeout=60, every=0.25, what="the second tab")
        assert _answer(other, "base").strip() and _answer(other, "tuned").strip()
        assert not _answered(page), "the first tab's long answer ended before the second's"
        page.get_by_role("button", name="Stop", exact=True).click()
        wait_for(lambda: "Stopped" in text_of(page, "gp-chat-status"), timeout=30, every=0.25,
                 what="the stop")
        print(f"long answer stopped after {time.monotonic() - started:.1f} s")
        for side in ("base", "tuned"):
            info = text_of(page, f"gp-chat-{side}").rsplit("tokens in", 1)
            tokens = int(info[0].split()[-1])
            assert ", stopped" in info[1] and 0 < tokens < LONG, info
        assert f"step {STEP}" in page.locator("select").filter(has_text="latest").first \
            .inner_text()
        browser.close()
