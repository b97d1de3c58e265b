"""Exactly-once listening: content event ids, duplicates inside a batch and against the lake.

The importer names an event by what it is (listener, item, time, event type, the source's own
id), never by its row, so the same interaction has the same id in any file, order or split;
`lake.drop_published` leaves out what the lake already holds, reading only the key column of
the batch's own day partitions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.importers import import_path
from tests.fixtures import batches as B
from validation import validate_batch

BASE = datetime(2026, 1, 5, tzinfo=UTC)


def export(n: int, start: int = 0) -> pd.DataFrame:
    """Rows start..start+n-1 of one listening export (one play a minute)."""
    rows = range(start, start + n)
    return pd.DataFrame(
        {
            "user_id": [f"u{i % 7}" for i in rows],
            "item_id": [f"t{(i * 3) % 11}" for i in rows],
            "timestamp": [(BASE + timedelta(minutes=i)).isoformat() for i in rows],
        }
    )


def stage(frame: pd.DataFrame, folder: Path, name: str) -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return import_path("interactions", path, folder / "staging")


def event_ids(batch: Path) -> pd.DataFrame:
    return lake.read_batch_table(batch, "events").to_pandas()[[C.EVENT_ID, C.USER_ID, C.TS]]


rows = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from("xyz"), st.integers(0, 3)),
    min_size=1,
    max_size=30,
)


@hypothesis_settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=rows, seed=st.randoms(use_true_random=False), cut=st.integers(0, 30))
def test_content_ids_stable_under_order_and_splitting(
    tmp_path_factory: pytest.TempPathFactory, data: list[tuple[str, str, int]], seed, cut: int
) -> None:
    folder = tmp_path_factory.mktemp("ids")
    frame = pd.DataFrame(data, columns=["user_id", "item_id", "minute"])
    frame["timestamp"] = [(BASE + timedelta(minutes=m)).isoformat() for m in frame["minute"]]
    frame = frame.drop(columns="minute")
    whole = set(event_ids(stage(frame, folder, "whole.csv"))[C.EVENT_ID])
    shuffled = frame.sample(frac=1.0, random_state=seed.randint(0, 2**31))
    assert set(event_ids(stage(shuffled, folder, "shuffled.csv"))[C.EVENT_ID]) == whole
    cut = min(cut, len(frame) - 1)
    parts = [frame.iloc[: cut + 1], frame.iloc[cut:]]  # overlapping by one row
    split = set().union(
        *(set(event_ids(stage(p, folder, f"part{k}.csv"))[C.EVENT_ID]) for k, p in enumerate(parts))
    )
    assert split == whole
    assert len(whole) == len(frame.drop_duplicates())  # one id per distinct interaction


def test_ten_thousand_copies_of_one_event_stage_one(tmp_path: Path) -> None:
    batch = stage(pd.concat([export(1)] * 10_000), tmp_path, "copies.csv")
    info = lake.read_batch_info(batch)
    assert info.row_counts["events"] == 1
    assert lake.duplicate_counts(info)["events"] == {
        "received": 10_000,
        "in_batch": 9_999,
        "in_lake": 0,
    }


def test_source_event_id_keeps_two_plays_in_one_microsecond_apart(tmp_path: Path) -> None:
    frame = pd.concat([export(1)] * 2).assign(event_id=["play-1", "play-2"])
    batch = stage(frame, tmp_path, "two.csv")
    assert lake.read_batch_info(batch).row_counts["events"] == 2


def test_overlapping_resend_publishes_only_what_is_new(tmp_path: Path, settings: Settings) -> None:
    first = stage(export(2_000), tmp_path, "rows-0-1999.csv")
    assert lake.drop_published(first, settings.lake_dir)["events"]["in_lake"] == 0
    lake.publish_batch(first, settings.lake_dir)
    second = stage(export(2_000, start=1_000), tmp_path, "rows-1000-2999.csv")
    dups = lake.drop_published(second, settings.lake_dir)
    assert dups["events"] == {"received": 2_000, "in_batch": 0, "in_lake": 1_000}
    manifest = lake.publish_batch(second, settings.lake_dir)
    assert manifest["row_counts"]["events"] == 1_000
    events = lake.read_lake_table(settings.lake_dir, "events").to_pandas()
    assert len(events) == 3_000 and events[C.EVENT_ID].is_unique
    # every event id names one interaction: (listener, time) is unique per id
    assert len(events.drop_duplicates([C.USER_ID, C.TS])) == 3_000


def test_lake_dedup_reads_only_the_batch_days(tmp_path: Path, settings: Settings) -> None:
    old = stage(export(10), tmp_path, "old.csv")
    lake.publish_batch(old, settings.lake_dir)
    # break every published file: a read of any of them would now fail
    for path in settings.lake_dir.glob("events/**/*.parquet"):
        path.write_bytes(b"not parquet")
    later = export(10).assign(
        timestamp=[(BASE + timedelta(days=3, minutes=i)).isoformat() for i in range(10)]
    )
    batch = stage(later, tmp_path, "later.csv")
    assert lake.drop_published(batch, settings.lake_dir)["events"]["in_lake"] == 0


def test_exact_repeats_in_a_staged_batch_are_dropped_conflicts_are_not(
    tmp_path: Path, settings: Settings
) -> None:
    batch = B.write_valid_batch(settings.staging_dir)
    part = lake.table_files(batch, "events")[0]
    table = pq.read_table(part)
    pq.write_table(pa.concat_tables([table, table.slice(0, 3)]), part)  # 3 exact repeats
    dups = lake.drop_published(batch, settings.lake_dir)
    assert dups["events"]["in_batch"] == 3
    assert pq.read_table(part).num_rows == table.num_rows


def test_plausibility_names_the_check_for_events_at_1970(
    tmp_path: Path, settings: Settings
) -> None:
    fast = settings.model_copy(
        update={"validation": settings.validation.model_copy(update={"build_data_docs": False})}
    )
    frame = export(300)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    frame.loc[:99, "timestamp"] = [(epoch + timedelta(seconds=i)).isoformat() for i in range(100)]
    batch = import_path("interactions", _csv(frame, tmp_path / "epoch.csv"), fast.staging_dir)
    result = validate_batch(batch, fast, now=BASE + timedelta(days=1))
    (failure,) = [f for f in result.failures if f.column == C.TS]
    assert failure.unexpected_count == 100
    assert "implausible ts: before 1995-11-25, the later of validation.earliest_event" in (
        failure.message
    )
    assert "'1970-01-01T00:00:00+00:00'" in failure.message
    assert failure.rule == "events.ts.plausible"


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_dedup_leaves_broken_batches_to_validation(tmp_path: Path, settings: Settings) -> None:
    batch = B.write_valid_batch(settings.staging_dir)
    (batch / "events" / "extra.parquet").write_text("definitely not parquet")
    assert lake.drop_published(batch, settings.lake_dir)["events"]["in_lake"] == 0
    (batch / lake.BATCH_FILE).unlink()
    assert lake.drop_published(batch, settings.lake_dir) == {}
