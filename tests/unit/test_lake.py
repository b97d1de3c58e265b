"""Lake I/O: atomic publication, manifests as commit records, quarantine keeps everything."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossfade import columns as C
from crossfade.data import lake
from crossfade.data.contracts import CONTRACTS, conform


def _users(ids: list[str]) -> pa.Table:
    n = len(ids)
    return conform(
        pa.table(
            {
                C.USER_ID: ids,
                C.TIER: ["premium"] * n,
                C.COUNTRY: ["SE"] * n,
                C.AGE_BUCKET: ["25-34"] * n,
                C.LANGUAGE: ["sv"] * n,
                C.SIGNUP_DATE: [date(2025, 1, 1)] * n,
            }
        ),
        "users",
    )


def _events(n: int, start: datetime, prefix: str = "e") -> pa.Table:
    spec = CONTRACTS["events"]
    cols: dict[str, list[object]] = {}
    for field in spec.schema:
        if pa.types.is_boolean(field.type):
            cols[field.name] = [False] * n
        elif pa.types.is_integer(field.type):
            cols[field.name] = [1000] * n
        elif pa.types.is_timestamp(field.type):
            cols[field.name] = [start + timedelta(hours=12 * i) for i in range(n)]
        else:
            cols[field.name] = ["x"] * n
    cols[C.EVENT_ID] = [f"{prefix}{i}" for i in range(n)]
    return conform(pa.table(cols), "events")


def _batch(staging: Path, users: list[str], n_events: int) -> Path:
    info = lake.BatchInfo(
        lake.new_batch_id("test"), "test", date(2026, 1, 5), date(2026, 1, 6), details={}
    )
    batch = lake.create_batch(staging, info)
    lake.write_part(batch, "users", _users(users), 0)
    lake.write_part(batch, "events", _events(n_events, datetime(2026, 1, 5, tzinfo=UTC)), 0)
    return batch


def test_publish_partitions_by_day_and_commits_with_a_manifest(tmp_path: Path) -> None:
    batch = _batch(tmp_path / "staging", ["u1", "u2"], 4)
    manifest = lake.publish_batch(batch, tmp_path / "lake")
    assert manifest["row_counts"] == {"users": 2, "events": 4}
    days = sorted(p.name for p in (tmp_path / "lake" / "events").iterdir())
    assert days == ["date=2026-01-05", "date=2026-01-06"]
    assert not batch.exists()  # staged copy removed after publication
    assert lake.read_lake_table(tmp_path / "lake", "events").num_rows == 4


def test_files_without_a_manifest_are_invisible(tmp_path: Path) -> None:
    stray = tmp_path / "lake" / "events" / "date=2026-01-05" / "part-stray.parquet"
    stray.parent.mkdir(parents=True)
    pq.write_table(_events(3, datetime(2026, 1, 5, tzinfo=UTC)), stray)
    assert lake.read_lake_table(tmp_path / "lake", "events").num_rows == 0


def test_failed_publish_leaves_the_lake_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(tmp_path / "staging", ["u1"], 4)
    real_write = lake.atomic_write_parquet
    calls = {"n": 0}

    def flaky(table: pa.Table, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real_write(table, path)

    monkeypatch.setattr(lake, "atomic_write_parquet", flaky)
    with pytest.raises(OSError, match="disk full"):
        lake.publish_batch(batch, tmp_path / "lake")
    assert list((tmp_path / "lake").rglob("*.parquet")) == []
    assert lake.manifests(tmp_path / "lake") == []
    assert batch.exists()  # still staged: can be retried


def test_dimension_reads_keep_the_newest_row(tmp_path: Path) -> None:
    first = _batch(tmp_path / "staging", ["u1", "u2"], 1)
    lake.publish_batch(first, tmp_path / "lake")
    second = lake.create_batch(
        tmp_path / "staging",
        lake.BatchInfo(lake.new_batch_id("t2"), "test", date(2026, 1, 7), date(2026, 1, 7)),
    )
    newer = _users(["u2"]).set_column(1, C.TIER, pa.array(["ad_supported"]))
    lake.write_part(second, "users", newer, 0)
    lake.publish_batch(second, tmp_path / "lake")
    users = lake.read_lake_table(tmp_path / "lake", "users").to_pandas().set_index(C.USER_ID)
    assert users.loc["u2", C.TIER] == "ad_supported"
    assert users.loc["u1", C.TIER] == "premium"
    assert lake.known_keys(tmp_path / "lake", "users") == {"u1", "u2"}


def test_quarantine_keeps_the_batch_whole_with_its_report(tmp_path: Path) -> None:
    batch = _batch(tmp_path / "staging", ["u1"], 3)
    before = sorted(p.relative_to(batch) for p in batch.rglob("*"))
    target = lake.quarantine_batch(batch, tmp_path / "quarantine", {"success": False})
    after = sorted(p.relative_to(target) for p in target.rglob("*"))
    assert set(before) <= set(after)
    assert (target / lake.REPORT_FILE).is_file()
    assert not batch.exists()


def test_staged_row_counts_reports_unreadable_files(tmp_path: Path) -> None:
    batch = _batch(tmp_path / "staging", ["u1"], 3)
    (batch / "events" / "part-9.parquet").write_bytes(b"not parquet")
    counts, unreadable = lake.staged_row_counts(batch)
    assert counts == {"events": 3, "users": 1}
    assert unreadable == ["events/part-9.parquet"]


def test_republishing_the_same_batch_is_refused(tmp_path: Path) -> None:
    batch = _batch(tmp_path / "staging", ["u1"], 1)
    info = lake.read_batch_info(batch)
    lake.publish_batch(batch, tmp_path / "lake")
    again = lake.create_batch(tmp_path / "staging", info)
    with pytest.raises(lake.LakeError, match="already published"):
        lake.publish_batch(again, tmp_path / "lake")
