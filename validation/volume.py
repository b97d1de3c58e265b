"""Volume anomaly: a table's row count against the previous accepted batch.

The baseline is the newest published manifest (`lake.last_accepted_counts`). Its count is
scaled by window length (rows per window day), so a 1-day batch after a 14-day one is not an
anomaly just for being shorter. Then the batch must lie in
[volume_min_ratio, volume_max_ratio] x expected rows.

Not checked, on purpose:
- dimension tables (users, artists, items): a batch may carry a full snapshot or only the
  rows that changed, so their size legitimately swings by orders of magnitude;
- tables whose baseline is under `MIN_BASELINE_ROWS`: on a handful of rows a ratio is noise
  (a batch with 3 onboarding picks after one with 12 is not an incident);
- the first batch ever (no baseline).
A missing fact table whose baseline was large is an anomaly (0 rows is below the band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from crossfade.config import ValidationSettings
from crossfade.data import lake
from crossfade.data.contracts import CONTRACTS

MIN_BASELINE_ROWS = 100


@dataclass(frozen=True)
class VolumeBand:
    """Allowed row counts of one table, and where they come from."""

    table: str
    previous_batch: str
    previous_rows: int
    expected_rows: float
    min_rows: int
    max_rows: int

    def describe(self, found: int) -> str:
        """Sentence for a count outside the band."""
        direction = "below" if found < self.min_rows else "above"
        return (
            f"{self.table} has {found:,} rows, {direction} the allowed {self.min_rows:,}..."
            f"{self.max_rows:,}: the previous accepted batch {self.previous_batch} had "
            f"{self.previous_rows:,} ({self.expected_rows:,.0f} expected for this window)"
        )


def _days(start: str, end: str) -> int:
    return (date.fromisoformat(end) - date.fromisoformat(start)).days + 1


def volume_bands(
    lake_dir: Path, info: lake.BatchInfo | None, rules: ValidationSettings
) -> dict[str, VolumeBand]:
    """Row-count bands per fact table, or {} when there is no previous accepted batch."""
    counts = lake.last_accepted_counts(lake_dir)
    if not counts:
        return {}
    previous = lake.manifests(lake_dir)[-1]
    scale = 1.0
    if info is not None:
        prev_days = _days(previous["window_start"], previous["window_end"])
        this_days = (info.window_end - info.window_start).days + 1
        if prev_days > 0 and this_days > 0:
            scale = this_days / prev_days
    bands: dict[str, VolumeBand] = {}
    for table, spec in CONTRACTS.items():
        rows = int(counts.get(table, 0))
        if spec.dimension or rows < MIN_BASELINE_ROWS:
            continue
        expected = rows * scale
        bands[table] = VolumeBand(
            table=table,
            previous_batch=str(previous["batch_id"]),
            previous_rows=rows,
            expected_rows=expected,
            min_rows=math.ceil(expected * rules.volume_min_ratio),
            max_rows=math.floor(expected * rules.volume_max_ratio),
        )
    return bands
