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

The volume judged is the volume received: duplicates left out before validation (rows
already in the lake, repeats inside the batch) are added back, so a re-sent overlapping
export is not an anomaly just because little of it is new.
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
    duplicates: int = 0  # rows left out before validation; the band is shifted by them

    def describe(self, found: int) -> str:
        """Sentence for a count outside the band."""
        direction = "below" if found < self.min_rows else "above"
        low, high = self.min_rows + self.duplicates, self.max_rows + self.duplicates
        rows = f"{found + self.duplicates:,} rows"
        if self.duplicates:
            rows += f" received ({self.duplicates:,} of them duplicates left out)"
        return (
            f"{self.table} has {rows}, {direction} the allowed {low:,}..."
            f"{high:,}: the previous accepted batch {self.previous_batch} had "
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
    dups = lake.duplicate_counts(info) if info is not None else {}
    bands: dict[str, VolumeBand] = {}
    for table, spec in CONTRACTS.items():
        rows = int(counts.get(table, 0))
        if spec.dimension or rows < MIN_BASELINE_ROWS:
            continue
        expected = rows * scale
        left_out = dups.get(table, {})
        removed = int(left_out.get("in_batch", 0)) + int(left_out.get("in_lake", 0))
        bands[table] = VolumeBand(
            table=table,
            previous_batch=str(previous["batch_id"]),
            previous_rows=rows,
            expected_rows=expected,
            min_rows=max(0, math.ceil(expected * rules.volume_min_ratio) - removed),
            max_rows=max(0, math.floor(expected * rules.volume_max_ratio) - removed),
            duplicates=removed,
        )
    return bands
