"""Write docs/screenshots/*.png from a real Gemma 3 270M run in the served dashboard.

    python scripts/screenshots.py [--out docs/screenshots] [--steps 44] [--home DIR]
    nox -s screenshots

Serves the studio with ``recipes/quickstart.yaml`` (``train.max_steps=--steps``, an
evaluation halfway and at the end) on 127.0.0.1, in a fresh GEMMA_PANEL_HOME unless
``--home`` is given, and drives it in headless Debian chromium (Playwright):

1. Data: uploads ``examples/instruction/unit_conversions.jsonl``, waits for its report and
   token statistics: ``data.png``; Configure (its "Start here" card, then Advanced):
   ``configure.png``.
2. Train: presses "Start a run with this recipe", waits for the run to succeed and its
   samples to be shown, then names and tags it in the run list: ``train.png``; the same in
   the dark theme: ``train-dark.png``.
3. A second run at half the learning rate (queued through the store, same recipe); the
   Compare tab with both runs, a row each in the metrics table: ``compare.png``.
4. Export: the first run, its expected size and time, a ``--export`` export (``lora``) and
   its verification table: ``export.png``. Chat: one short greedy question
   (``--max-tokens``, 24) to the first run's tuned model and its base, both answered:
   ``chat.png``. Vertex AI: the form, nothing planned or submitted: ``vertex.png``.

Nothing is written to ``--out`` unless every step succeeded (the images go to a temporary
folder first). About 15 minutes on 2 CPU cores with the default 44 steps, before the export
and the chat. ``--tiny`` runs the same on a 2-layer random Gemma (about 2 minutes; a check of
this script, never for docs/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DOCS = REPO / "docs" / "screenshots"
DATA = REPO / "examples" / "instruction" / "unit_conversions.jsonl"
RUN_NAME = "unit conversions"
RUN_TAGS = ("quickstart", "docs")
SCROLL_TOP_JS = "() => document.querySelectorAll('*').forEach(e => { e.scrollTop = 0; })"
QUESTION = "How many grams are in a kilogram?"


def recipe_file(home: Path, steps: int, tiny: bool) -> Path:
    """The quickstart recipe, shortened to ``steps`` (on the tiny model with ``tiny``)."""
    from gemma_panel.config import load_recipe, recipe_to_yaml

    every = max(1, steps // 2)
    overrides = [f"train.max_steps={steps}", f"eval.every_steps={every}",
                 f"train.checkpoint_every={every}", "train.log_every=1",
                 f"train.warmup_steps={min(4, steps // 3)}"]  # the recipe's 4, below --steps
    if tiny:
        from tests.models.tiny_gguf import write_tiny_gemma_gguf

        gguf = write_tiny_gemma_gguf(home / "tiny.gguf", "gemma3", hidden=64, heads=2,
                                     kv_heads=1, head_dim=256, ffn=128, layers=2)
        overrides += [f"model.source={gguf}", "eval.max_new_tokens=4", "eval.task_examples=0"]
    path = home / "screenshots.yaml"
    path.write_text(recipe_to_yaml(load_recipe(REPO / "recipes" / "quickstart.yaml",
                                               overrides)))
    return path


def data_and_configure(page, shots: Path) -> None:
    from tests.runs.conftest import wait_for
    from tests.ui.browser import click_tab, shot, text_of

    page.locator("input.filepond--browser").set_input_files(str(DATA))
    wait_for(lambda: "usable" in text_of(page, "gp-report"), timeout=300, what="the report")
    wait_for(lambda: "Tokens (" in text_of(page, "gp-data-status"), timeout=600,
             what="token statistics")
    shot(page, shots, "data")
    click_tab(page, "Configure")
    page.get_by_text("Start here: the fields most runs change").first.wait_for()
    page.get_by_text("The same run from a terminal").wait_for()
    shot(page, shots, "configure")


def train(page, store, shots: Path, timeout: float):
    from tests.runs.conftest import wait_finished, wait_for
    from tests.ui.browser import click_tab, shot, text_of

    click_tab(page, "Train")
    page.get_by_role("button", name="Start a run with this recipe").click()
    run = wait_for(lambda: store.list_runs() and store.list_runs()[0], timeout=60,
                   what="the run to be queued")
    done = wait_finished(store, run.id, timeout=timeout)
    if done.status != "succeeded":
        raise SystemExit(f"run {run.id} {done.status}: {done.message}; nothing written")
    wait_for(lambda: "succeeded" in text_of(page, "gp-run-status"), timeout=30,
             what="the succeeded status")
    samples = store.samples(run.id)
    if not samples:
        raise SystemExit(f"run {run.id} recorded no samples; nothing written")
    page.get_by_text(samples[-1].prompt.strip().splitlines()[0][:20]).first.wait_for()
    name_and_tags(page, store, run.id)
    shot(page, shots, "train", height=2800)  # the charts and samples, then the run list
    return store.get(run.id)


def name_and_tags(page, store, run_id: str) -> None:
    """Name and tag the run in the Train tab's run list (its edit row), as a user would."""
    from tests.runs.conftest import wait_for

    page.locator(".gp-run-name input").fill(RUN_NAME)
    page.locator(".gp-run-name input").press("Enter")
    page.locator(".gp-run-tags input").fill(", ".join(RUN_TAGS))
    page.locator(".gp-run-tags input").press("Enter")
    page.get_by_role("button", name="Save name, notes and tags").click()
    wait_for(lambda: store.get(run_id).name == RUN_NAME
             and set(RUN_TAGS) <= set(store.get(run_id).tags), timeout=30,
             what="the name and tags to reach the store")
    page.get_by_text(RUN_NAME).first.wait_for()
    page.evaluate(SCROLL_TOP_JS)  # the click scrolled the tab to its run list


def compare(browser, url: str, store, first, shots: Path, timeout: float) -> None:
    import yaml

    from gemma_panel.config import load_recipe
    from gemma_panel.runs import submit
    from tests.runs.conftest import wait_finished, wait_for
    from tests.ui.browser import click_tab, open_page, pick_compare_runs, shot, text_of

    path = store.root / "second.yaml"  # the first run's recipe, as the dashboard made it
    path.write_text(first.recipe_yaml)
    lr = yaml.safe_load(first.recipe_yaml)["train"]["learning_rate"]
    second = submit(load_recipe(path, [f"train.learning_rate={lr / 2}"]), store,
                    trainer=first.trainer)
    done = wait_finished(store, second.id, timeout=timeout)
    if done.status != "succeeded":
        raise SystemExit(f"run {second.id} {done.status}: {done.message}; nothing written")
    page = open_page(browser, url, timeout_ms=120_000)
    click_tab(page, "Compare")
    pick_compare_runs(page, [first.id, second.id])
    wait_for(lambda: "2 run(s)" in text_of(page, "gp-compare-message"), timeout=60,
             what="the comparison")
    rows = page.locator(".gp-compare-table").first.locator("tbody tr")
    wait_for(lambda: rows.count() == 2, timeout=30, what="a metrics row per run")
    shot(page, shots, "compare")
    page.close()


def pick_run(page, run_id: str) -> None:
    """Choose ``run_id`` in the open tab's run picker (the visible select offering it)."""
    picker = page.locator("select").filter(visible=True).filter(
        has=page.locator(f"option[value='{run_id}']")).first
    picker.select_option(run_id)


def pick(page, label: str, value: str) -> None:
    group = page.locator(".bk-input-group", has_text=label).filter(visible=True).first
    group.locator("select").first.select_option(value)


def export(page, run, shots: Path, fmt: str, timeout: float) -> None:
    """The Export tab on the finished run: its expected size and time, then a ``fmt``
    export and its verification table."""
    from tests.runs.conftest import wait_for
    from tests.ui.browser import click_tab, shot, text_of

    click_tab(page, "Export")
    pick_run(page, run.id)
    pick(page, "Format", fmt)
    wait_for(lambda: "Expected" in text_of(page, "gp-export-expected")
             and fmt in text_of(page, "gp-export-expected").lower(), timeout=60,
             what="the expected size and time")
    page.get_by_role("button", name="Export", exact=True).click()
    status = lambda: text_of(page, "gp-export-status")
    wait_for(lambda: any(w in status() for w in ("Exported and verified", "did not", "failed",
                                                  "Stopped")), timeout=timeout, every=0.5,
             what="the export to end")
    if "Exported and verified" not in status():
        raise SystemExit(f"the {fmt} export: {status()} {text_of(page, 'gp-export-log')[-2000:]}"
                         "; nothing written")
    wait_for(lambda: "passed" in text_of(page, "gp-export-checks"), timeout=60,
             what="the verification table")
    shot(page, shots, "export")


def chat(page, run, shots: Path, max_tokens: int, timeout: float) -> None:
    """The Chat tab: one short greedy question to the tuned run and its base."""
    from tests.runs.conftest import wait_for
    from tests.ui.browser import click_tab, shot, text_of

    click_tab(page, "Chat")
    page.locator(".gp-chat-status").first.wait_for(state="attached")
    pick_run(page, run.id)
    box = page.locator(".bk-input-group", has_text="Max new tokens").locator("input").first
    box.fill(str(max_tokens))
    box.press("Enter")
    message = page.locator(".bk-input-group", has_text="Message").locator("textarea").first
    message.fill(QUESTION)
    message.press("Tab")
    page.get_by_role("button", name="Send", exact=True).click()
    status = lambda: text_of(page, "gp-chat-status")
    wait_for(lambda: "Answered" in status() or "failed" in status().lower(), timeout=timeout,
             every=0.5, what="both answers")
    answers = [text_of(page, f"gp-chat-{side}").rsplit("You:", 1)[-1].split("\n", 1)[-1]
               for side in ("base", "tuned")]
    if "Answered" not in status() or not all(a.strip() for a in answers):
        raise SystemExit(f"the chat: {status()} {answers}; nothing written")
    shot(page, shots, "chat")


def vertex(page, shots: Path) -> None:
    """The Vertex AI tab's form (nothing is planned or submitted)."""
    from tests.ui.browser import click_tab, shot

    click_tab(page, "Vertex AI")
    page.locator(".gp-vertex-show").first.wait_for()
    shot(page, shots, "vertex")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--steps", type=int, default=44, help="steps of each run")
    parser.add_argument("--home", type=Path, help="GEMMA_PANEL_HOME (default: a new one)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--export", default="lora", help="the format the Export tab makes")
    parser.add_argument("--max-tokens", type=int, default=24,
                        help="new tokens of each chat answer (the 270M decodes ~2-3/s here)")
    parser.add_argument("--tiny", action="store_true",
                        help="a random 2-layer Gemma instead of the 270M: checks the script")
    args = parser.parse_args()
    if args.tiny and args.out.resolve() == DOCS.resolve():
        parser.error("--tiny makes meaningless pictures: give --out a folder outside docs/")

    home = args.home or Path(tempfile.mkdtemp(prefix="gp-screenshots-"))
    os.environ.update(GEMMA_PANEL_HOME=str(home), KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    from playwright.sync_api import sync_playwright

    from gemma_panel.runs import RunStore
    from tests.ui.browser import click_tab, launch, open_page, shot
    from tests.ui.conftest import SERVED_APP, Server, server_env

    store = RunStore(home)
    env = server_env(store, GP_TEST_RECIPE=str(recipe_file(home, args.steps, args.tiny)))
    shots = Path(tempfile.mkdtemp(prefix="gp-shots-"))
    server = Server(SERVED_APP, env).start()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = open_page(browser, server.url, timeout_ms=300_000)
            data_and_configure(page, shots)
            started = time.monotonic()
            first = train(page, store, shots, args.timeout)
            print(f"run {first.id} succeeded in {time.monotonic() - started:.0f} s")
            page.close()
            dark = open_page(browser, server.url + "?theme=dark", timeout_ms=120_000)
            click_tab(dark, "Train")
            shot(dark, shots, "train-dark")
            dark.close()
            compare(browser, server.url, store, first, shots, args.timeout)
            page = open_page(browser, server.url, timeout_ms=120_000)
            export(page, first, shots, args.export, args.timeout)
            chat(page, first, shots, args.max_tokens, args.timeout)
            vertex(page, shots)
            browser.close()
    finally:
        server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    for image in sorted(shots.glob("*.png")):
        shutil.copy2(image, args.out / image.name)
        print(f"wrote {args.out / image.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
