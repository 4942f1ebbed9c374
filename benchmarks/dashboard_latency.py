"""How fast the served studio loads, and how long a recorded metric takes to reach the screen.

    python benchmarks/dashboard_latency.py [--loads 5] [--seconds 30] [--trainer tiny|fake]

Serves ``dashboards/studio.py`` (``panel serve`` on 127.0.0.1, a fresh GEMMA_PANEL_HOME) and
drives it with headless Debian chromium (Playwright, ``/usr/bin/chromium``):

* page load: from ``page.goto`` until the Bokeh document is rendered with the live charts
  in it (a fresh session each time), ``--loads`` times;
* metric-to-screen latency: a run that records every step (``tiny``: the real trainer on a
  2-layer random Gemma 3, about 10 ms a step, logging every step; ``fake``: the test
  trainer, 20 steps/s) trains while the page shows it. The page notes when each new loss
  point arrives in the chart's ColumnDataSource (polling every 10 ms); latency is that time
  minus the time the worker recorded the point (same machine, same clock). The path: the
  worker's StoreSink (commits every 0.25 s), SQLite, the dashboard's 250 ms periodic
  callback, ``ColumnDataSource.stream``, the websocket, BokehJS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="how long to watch the run train")
    parser.add_argument("--trainer", choices=["tiny", "fake"], default="tiny")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="gp-dash-bench-"))
    os.environ.update(GEMMA_PANEL_HOME=str(home), KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
                      FAKE_STEP_S="0.05")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])

    from playwright.sync_api import sync_playwright

    from gemma_panel.config import load_recipe
    from gemma_panel.runs import RunStore, cancel, submit
    from tests.ui.browser import ARRIVALS_JS, click_tab, launch, open_page
    from tests.ui.conftest import Server, fake_recipe, server_env, tiny_overrides

    store = RunStore(home)
    server = Server(REPO / "dashboards" / "studio.py", server_env(store)).start()
    try:
        with sync_playwright() as p:
            browser = launch(p)
            open_page(browser, server.url).close()  # warm up: first imports, first session
            loads = []
            for _ in range(args.loads):
                started = time.perf_counter()
                page = open_page(browser, server.url)
                loads.append(time.perf_counter() - started)
                page.close()

            if args.trainer == "tiny":
                from tests.models.tiny_gguf import write_tiny_gemma_gguf

                gguf = write_tiny_gemma_gguf(home / "tiny.gguf", "gemma3", hidden=64, heads=2,
                                             kv_heads=1, head_dim=256, ffn=128, layers=2)
                recipe = load_recipe(None, ["name=bench", *tiny_overrides(gguf, 1_000_000)])
                run = submit(recipe, store)
            else:
                run = submit(fake_recipe("train.max_steps=1000000", name="bench"), store,
                             trainer="tests.runs.fake_trainer:train")
            while store.get(run.id).step < 1:
                time.sleep(0.1)
            page = open_page(browser, server.url)  # reattaches to the active run
            click_tab(page, "Train")
            page.evaluate(ARRIVALS_JS, "train-loss")
            watch_from = time.time() + 1.0  # points recorded after the recorder is running
            time.sleep(args.seconds)
            arrivals = {}
            for step, at_ms in page.evaluate("() => window.__arrivals"):
                arrivals.setdefault(step, at_ms / 1000)
            cancel(run.id, store)
            page.close()
            browser.close()
        recorded = {m.step: m.time for m in store.metrics(run.id, names=["loss"])}
        latency = [arrivals[s] - t for s, t in recorded.items() if s in arrivals and t > watch_from]
        missing = [s for s, t in recorded.items() if t > watch_from and s not in arrivals
                   and t < watch_from + args.seconds - 2]
    finally:
        server.stop()

    if not latency:
        print(f"no loss point reached the page: {len(arrivals)} arrivals, {len(recorded)} "
              f"recorded; run {run.id}: {store.get(run.id).status} {store.get(run.id).message}")
        return 1
    steps_per_s = len(latency) / max(1e-9, args.seconds - 1)
    print(f"page load ({args.loads} fresh sessions): median {statistics.median(loads):.2f} s, "
          f"max {max(loads):.2f} s")
    print(f"metric-to-screen latency, {len(latency)} loss points ({args.trainer} trainer, "
          f"~{steps_per_s:.0f} steps/s): p50 {percentile(latency, 0.5) * 1000:.0f} ms, "
          f"p95 {percentile(latency, 0.95) * 1000:.0f} ms, max {max(latency) * 1000:.0f} ms")
    print(f"points recorded but never shown: {len(missing)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
