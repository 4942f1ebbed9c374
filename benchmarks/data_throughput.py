"""Data check throughput: `check_dataset` over a generated 1-million-row CSV.

    python benchmarks/data_throughput.py [--rows N] [--repeat K]

The CSV (prompt,response; about 130 MB, one exact duplicate at the end) is written to a
temporary folder; each check runs in a fresh Python process, so the figures are what
``gemma-panel data check`` costs. Peak memory is the child's own VmHWM from
/proc/self/status (ru_maxrss of a child would be inherited from this parent). Import
time is reported apart from the check itself.

Targets: >= 50,000 rows/s and <= 300 MB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_S = 50_000
TARGET_PEAK_MB = 300

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from gemma_panel.data import check_dataset
t1 = time.perf_counter()
report = check_dataset(sys.argv[1])
t2 = time.perf_counter()
status = open("/proc/self/status").read().split("\n")
kb = {l.split(":")[0]: int(l.split()[1]) for l in status if l.startswith(("VmHWM", "VmRSS"))}
print(json.dumps({"import_s": t1 - t0, "check_s": t2 - t1, "rows": report.rows_read,
                  "errors": report.n_errors, "duplicates": report.counts["duplicate"],
                  "peak_mb": kb["VmHWM"] / 1024, "rss_mb": kb["VmRSS"] / 1024}))
"""


def write_csv(path: Path, rows: int) -> None:
    with open(path, "w") as f:
        f.write("prompt,response\n")
        f.writelines(f'"Question {i}: what is {i} plus one, exactly?",'
                     f'"The answer is {i + 1}, because {i} + 1 = {i + 1}."\n'
                     for i in range(rows))
        f.write('"Question 7: what is 7 plus one, exactly?",'
                '"The answer is 8, because 7 + 1 = 8."\n')


def run_child(path: Path) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs; the best is reported")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        start = time.perf_counter()
        write_csv(path, args.rows)
        size_mb = path.stat().st_size / 2**20
        print(f"wrote {args.rows + 1:,} rows, {size_mb:.0f} MB in "
              f"{time.perf_counter() - start:.1f} s")
        runs = [run_child(path) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["check_s"])
    expected = (args.rows + 1, 0, 1)
    got = (best["rows"], best["errors"], best["duplicates"])
    if got != expected:
        print(f"unexpected report: rows, errors, duplicates = {got}, not {expected}")
        return 1
    rate = best["rows"] / best["check_s"]
    peak = max(r["peak_mb"] for r in runs)
    print(f"check_dataset: {best['check_s']:.1f} s for {best['rows']:,} rows "
          f"(+{best['import_s']:.1f} s imports)")
    print(f"throughput {rate:,.0f} rows/s; target >= {TARGET_ROWS_PER_S:,}: "
          f"ratio {rate / TARGET_ROWS_PER_S:.2f} "
          f"({'met' if rate >= TARGET_ROWS_PER_S else 'NOT met'})")
    print(f"peak memory {peak:.0f} MB (VmHWM); target <= {TARGET_PEAK_MB}: "
          f"ratio {peak / TARGET_PEAK_MB:.2f} ({'met' if peak <= TARGET_PEAK_MB else 'NOT met'})")
    print(f"file {size_mb:.0f} MB; peak / file {peak / size_mb:.2f}")
    return 0 if rate >= TARGET_ROWS_PER_S and peak <= TARGET_PEAK_MB else 2


if __name__ == "__main__":
    sys.exit(main())
