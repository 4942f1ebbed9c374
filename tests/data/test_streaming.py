"""A million-row CSV is checked in a stream: memory stays far below the file's size."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys, time
from gemma_panel.data.check import check_dataset
start = time.time()
report = check_dataset(sys.argv[1])
seconds = time.time() - start
# VmHWM is this process's own peak; ru_maxrss would include the pytest parent it forked from.
peak_mb = int(next(line.split()[1] for line in open("/proc/self/status")
                   if line.startswith("VmHWM:"))) / 1024
print(report.rows_read, report.n_errors, report.counts["duplicate"], round(peak_mb),
      round(report.rows_read / seconds))
"""


@pytest.mark.slow
def test_million_row_csv_is_checked_in_bounded_memory(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("prompt,response\n")
        f.writelines(f'"Question {i}: what is {i} plus one, exactly?",'
                     f'"The answer is {i + 1}, because {i} + 1 = {i + 1}."\n'
                     for i in range(1_000_000))
        f.write('"Question 7: what is 7 plus one, exactly?","The answer is 8, because 7 + 1 = 8."\n')
    size_mb = path.stat().st_size / 2**20
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True,
                         text=True, check=True).stdout.split()
    rows, errors, duplicates, peak_mb, rows_per_s = map(int, out)
    assert (rows, errors, duplicates) == (1_000_001, 0, 1)
    assert size_mb > 90 and peak_mb < 300, (size_mb, peak_mb)
    print(f"{rows_per_s} rows/s, peak {peak_mb} MB for a {size_mb:.0f} MB file")
