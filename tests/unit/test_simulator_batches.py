"""A world delivered as consecutive batches holds exactly the events of one whole-window batch,
and each batch passes validation on its own, so the lifecycle can ingest new weeks."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.simulator import simulate, split_days
from validation.runner import validate_batch


def test_split_days_covers_the_window_once() -> None:
    assert split_days(14, 2) == [range(0, 12), range(12, 14)]
    assert split_days(5, 0) == [range(0, 5)]
    with pytest.raises(ValueError, match="holdback"):
        split_days(3, 3)


def test_day_range_outside_the_window_is_refused(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="simulated window"):
        simulate(settings.simulator, 1, tmp_path / "s", tmp_path / "t", days=range(2, 99))


def test_consecutive_batches_equal_one_whole_window(settings: Settings, tmp_path: Path) -> None:
    sim = settings.simulator
    whole = simulate(sim, 3, tmp_path / "whole", tmp_path / "truth_whole")
    parts = [
        simulate(sim, 3, tmp_path / "parts", tmp_path / "truth_parts", days=span)
        for span in split_days(sim.days, 2)
    ]
    for table in ("events", "ad_impressions", "onboarding"):
        key = {"events": C.EVENT_ID, "ad_impressions": C.IMPRESSION_ID}.get(table, C.USER_ID)
        one = lake.read_batch_table(whole, table).sort_by(key)
        split = pa.concat_tables([lake.read_batch_table(p, table) for p in parts]).sort_by(key)
        assert one.num_rows == split.num_rows > 0
        assert one.equals(split), table
    info = [lake.read_batch_info(p) for p in parts]
    assert info[0].window_end < info[1].window_start
    for part in parts:
        result = validate_batch(part, settings)
        assert result.success, result.summary_lines()
        lake.publish_batch(part, settings.lake_dir)
