"""Parquet files, read one record batch at a time."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.sources import Record

_BATCH_ROWS = 4096


def read_parquet(path: Path, report: ValidationReport) -> Iterator[Record]:
    """Yield one `Record` per row; NaN becomes None, so it counts as a missing value."""
    import pyarrow.parquet as pq  # pyarrow is heavy; import it only for Parquet

    try:
        # A gs:// file (gemma_panel.cloud.gcs.GcsFile) is read through its seekable stream.
        file = pq.ParquetFile(path if isinstance(path, Path) else path.open("rb"))
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...: all mean "bad file"
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from exc
    report.encoding = "parquet"
    row = 0
    for batch in file.iter_batches(batch_size=_BATCH_ROWS):
        for values in batch.to_pylist():
            row += 1
            for key, value in values.items():
                if isinstance(value, float) and math.isnan(value):
                    values[key] = None
            yield Record(values, row=row)
