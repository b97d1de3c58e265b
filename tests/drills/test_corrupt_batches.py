"""Drills: break a valid batch in one way, and the gate must reject it and say exactly why.

Every drill starts from a fresh valid batch (`write_valid_batch`), corrupts one thing, runs
`validate_batch` and checks the verdict, the table / check / column of the failure, that the
message is a clear sentence, that the sample points at the offending row or file, and that
the lake was not touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.contracts import contract
from tests.fixtures import batches as B
from validation import Failure, ValidationResult, validate_batch

# The fixture's window is START .. START + 2 days, with timestamps before noon each day.
LAST_DAY_NOON = datetime(2026, 1, 7, 12, tzinfo=UTC)


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """The test settings without Data Docs (rendering HTML is the slow part of a run)."""
    rules = settings.validation.model_copy(update={"build_data_docs": False})
    return settings.model_copy(update={"validation": rules})


def _lake_snapshot(settings: Settings) -> list[tuple[str, int]]:
    root = settings.lake_dir
    if not root.exists():
        return []
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def _validate(batch: Path, settings: Settings, now: datetime | None = None) -> ValidationResult:
    before = _lake_snapshot(settings)
    result = validate_batch(batch, settings, now=now)
    assert _lake_snapshot(settings) == before, "validation must never write to the lake"
    assert result.report_path and Path(result.report_path).is_file()
    return result


def _failure(result: ValidationResult, table: str, check: str, column: str | None) -> Failure:
    assert not result.success
    for failure in result.failures:
        if (failure.table, failure.check, failure.column) == (table, check, column):
            return failure
    found = "\n".join(result.summary_lines())
    raise AssertionError(f"no failure {table}/{check}/{column}; failures:\n{found}")


def _sample_has(failure: Failure, column: str, value: object) -> None:
    assert failure.sample, f"{failure.message}: no sample rows"
    assert any(row.get(column) == value for row in failure.sample), failure.sample


@dataclass(frozen=True)
class Case:
    """One value corruption: which cell to set, and the failure it must produce."""

    id: str
    table: str
    column: str
    value: object
    check: str
    words: str  # must appear in the message
    part: int = 0
    now: datetime | None = None


IN_SET = "expect_column_values_to_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
VALUE_CASES = [
    Case("unknown-user-id", "events", C.USER_ID, "u9999999", IN_SET, "unknown user ids"),
    Case("unknown-item-id", "events", C.ITEM_ID, "t9999999", IN_SET, "unknown item ids"),
    Case("unknown-artist-id", "items", C.ARTIST_ID, "a9999999", IN_SET, "unknown artist ids"),
    Case("ms-played-negative", "events", C.MS_PLAYED, -5, BETWEEN, "ms_played below 0"),
    Case(
        "ms-played-beyond-duration",
        "events",
        C.MS_PLAYED,
        10**8,
        "expect_column_pair_values_a_to_be_greater_than_b",
        "ms_played greater than the duration_ms of its item",
    ),
    Case(
        "ts-in-future",
        "events",
        C.TS,
        pd.Timestamp("2026-01-07T18:00:00Z"),
        BETWEEN,
        "in the future",
        part=-1,
        now=LAST_DAY_NOON,
    ),
    Case(
        "ts-after-window",
        "events",
        C.TS,
        pd.Timestamp("2026-01-09T01:00:00Z"),
        BETWEEN,
        "outside the batch window [2026-01-05, 2026-01-08)",
    ),
    Case(
        "ts-before-window",
        "ad_impressions",
        C.TS,
        pd.Timestamp("2026-01-04T23:00:00Z"),
        BETWEEN,
        "outside the batch window",
    ),
]


@pytest.mark.parametrize("case", VALUE_CASES, ids=[c.id for c in VALUE_CASES])
def test_value_corruption_is_caught(case: Case, fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    part = len(lake.table_files(batch, case.table)) - 1 if case.part == -1 else case.part
    key = B.set_cell(batch, case.table, case.column, 3, case.value, part=part)
    result = _validate(batch, fast, now=case.now)
    failure = _failure(result, case.table, case.check, case.column)
    assert case.words in failure.message
    assert failure.unexpected_count == 1
    _sample_has(failure, contract(case.table).key, key)
    offending = failure.sample[0][case.column]
    expected = case.value.isoformat() if isinstance(case.value, pd.Timestamp) else case.value
    assert offending == expected
    assert len(result.failures) == 1, result.summary_lines()


DOMAIN_CASES = [
    Case(
        "tier",
        "users",
        C.TIER,
        "platinum",
        IN_SET,
        "1 row has tier outside {premium, ad_supported}",
    ),
    Case("country", "users", C.COUNTRY, "XX", IN_SET, "1 row has country outside {US, GB"),
    Case(
        "age-bucket", "users", C.AGE_BUCKET, "0-12", IN_SET, "1 row has age_bucket outside {13-17"
    ),
    Case("device", "events", C.DEVICE, "fridge", IN_SET, "1 row has device outside {phone"),
]


def test_domain_violations_are_caught(fast: Settings) -> None:
    """Tier, country, age bucket and device, planted in different rows of one batch."""
    batch = B.write_valid_batch(fast.staging_dir)
    keys = [
        B.set_cell(batch, case.table, case.column, row, case.value)
        for row, case in enumerate(DOMAIN_CASES, start=2)
    ]
    result = _validate(batch, fast)
    assert len(result.failures) == len(DOMAIN_CASES), result.summary_lines()
    for case, key in zip(DOMAIN_CASES, keys, strict=True):
        failure = _failure(result, case.table, case.check, case.column)
        assert failure.message.startswith(case.words)
        assert failure.message.endswith(f"; found {case.value!r}")
        assert failure.unexpected_count == 1
        _sample_has(failure, contract(case.table).key, key)
        assert failure.sample[0][case.column] == case.value


@pytest.mark.parametrize("column", [C.EVENT_ID, C.USER_ID])
def test_null_ids_are_caught(column: str, fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    key = B.set_cell(batch, "events", column, 4, None)
    failure = _failure(
        _validate(batch, fast), "events", "expect_column_values_to_not_be_null", column
    )
    assert failure.message == f"1 row has no {column} (null)"
    assert failure.sample[0][column] is None
    if column != C.EVENT_ID:
        _sample_has(failure, C.EVENT_ID, key)


def test_duplicate_event_ids_within_a_part(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    for row in (3, 4):
        B.set_cell(batch, "events", C.EVENT_ID, row, "e0000001")
    failure = _failure(
        _validate(batch, fast), "events", "expect_column_values_to_be_unique", C.EVENT_ID
    )
    assert failure.message == "1 event id appears more than once (3 rows)"
    assert failure.unexpected_count == 3
    assert [row[C.EVENT_ID] for row in failure.sample] == ["e0000001"] * 3


def test_duplicate_event_ids_across_parts(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    first_ids = pd.read_parquet(B.first_part(batch, "events"))[C.EVENT_ID]
    for row in range(12):
        B.set_cell(batch, "events", C.EVENT_ID, row, first_ids[row], part=2)
    failure = _failure(
        _validate(batch, fast), "events", "expect_column_values_to_be_unique", C.EVENT_ID
    )
    assert failure.message == "12 event ids appear more than once (24 rows, across parts)"
    files = {row["_file"] for row in failure.sample}
    assert files == {
        "events/date=2026-01-05/part-0.parquet",
        "events/date=2026-01-07/part-0.parquet",
    }


DRIFT_CASES: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], str, str, str]] = [
    (
        "missing-column",
        lambda f: f.drop(columns=[C.DEVICE]),
        "expect_column_to_exist",
        C.DEVICE,
        "events.device: column is missing",
    ),
    (
        "extra-column",
        lambda f: f.assign(mood="happy"),
        "expect_table_columns_to_match_ordered_list",
        "mood",
        "events.mood: column is not in the contract",
    ),
    (
        "renamed-column",
        lambda f: f.rename(columns={C.DEVICE: "device_type"}),
        "expect_table_columns_to_match_ordered_list",
        C.DEVICE,
        "events.device: column is missing and 'device_type' appears in its place (renamed?)",
    ),
    (
        "retyped-column",
        lambda f: f.assign(ms_played=f[C.MS_PLAYED].astype(str)),
        "expect_column_values_to_be_of_type",
        C.MS_PLAYED,
        "events.ms_played: expected int64, found string",
    ),
]


@pytest.mark.parametrize(
    ("edit", "check", "column", "words"),
    [case[1:] for case in DRIFT_CASES],
    ids=[case[0] for case in DRIFT_CASES],
)
def test_schema_drift_is_caught(
    edit: Callable[[pd.DataFrame], pd.DataFrame],
    check: str,
    column: str,
    words: str,
    fast: Settings,
) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    B.edit_table(batch, "events", edit, keep_schema=False)
    result = _validate(batch, fast)
    failure = _failure(result, "events", check, column)
    assert failure.message.startswith(words)
    assert "events/date=2026-01-05/part-0.parquet" in failure.message
    assert failure.sample == [
        {"_file": "events/date=2026-01-05/part-0.parquet", **_expected_found(failure)}
    ]
    # the drift is reported once, not again by every check that depends on the column
    assert len(result.failures) == 1, result.summary_lines()


def _expected_found(failure: Failure) -> dict[str, object]:
    return {"expected": failure.sample[0]["expected"], "found": failure.sample[0]["found"]}


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("text", "is not a Parquet file: it starts with b'event_id' (CSV-like text)"),
        ("utf16", "is not a Parquet file: it starts with b'\\xff\\xfe"),
        ("empty", "is an empty file (0 bytes)"),
        ("truncated", "is truncated"),
    ],
)
def test_malformed_file_is_a_failure_not_a_traceback(kind: str, words: str, fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    path = B.first_part(batch, "events")
    B.write_garbage(path, kind)
    failure = _failure(_validate(batch, fast), "events", "parquet_readable", None)
    label = "events/date=2026-01-05/part-0.parquet"
    assert failure.message.startswith(f"{label} {words}")
    assert failure.sample == [{"_file": label}]


def test_unreadable_dimension_is_named_in_the_reference_failures(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    B.write_garbage(B.first_part(batch, "users"), "empty")
    result = _validate(batch, fast)
    _failure(result, "users", "parquet_readable", None)
    refs = _failure(result, "events", "expect_column_values_to_be_in_set", C.USER_ID)
    assert "users has files that could not be read" in refs.message


def test_missing_batch_json(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    (batch / lake.BATCH_FILE).unlink()
    result = _validate(batch, fast)
    failure = _failure(result, "batch", "batch_info", None)
    assert "batch.json is missing" in failure.message
    assert result.batch_id == batch.name
    assert len(result.failures) == 1, result.summary_lines()


def test_unknown_table_folder(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    (batch / "playlists").mkdir()
    (batch / "playlists" / "part-0.parquet").write_bytes(B.first_part(batch, "users").read_bytes())
    failure = _failure(_validate(batch, fast), "playlists", "known_table", None)
    assert failure.message.startswith("folder playlists/ matches no data contract")


def test_stray_non_parquet_file_in_a_table(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    (batch / "events" / "notes.csv").write_text("a,b\n")
    failure = _failure(_validate(batch, fast), "events", "parquet_readable", None)
    assert failure.message.startswith("events/notes.csv is not a .parquet file")


def test_events_table_missing(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    shutil.rmtree(batch / "events")
    failure = _failure(_validate(batch, fast), "events", "table_present", None)
    assert "the batch has no events table" in failure.message


@pytest.mark.parametrize(("table", "column"), [("users", C.USER_ID), ("items", C.ITEM_ID)])
def test_referenced_dimension_missing(table: str, column: str, fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    shutil.rmtree(batch / table)
    result = _validate(batch, fast)
    failure = _failure(result, "events", IN_SET, column)
    assert f"(the batch has no {table} table)" in failure.message
    assert failure.unexpected_count == result.row_counts["events"]


def _publish_baseline(settings: Settings, users: int = 50) -> dict[str, int]:
    """Publish a valid batch (the fixture is valid: see the unit tests) as the baseline."""
    batch = B.write_valid_batch(settings.staging_dir, users=users)
    return lake.publish_batch(batch, settings.lake_dir)["row_counts"]


@pytest.mark.parametrize(("users", "direction"), [(5, "below"), (600, "above")])
def test_volume_anomaly_against_previous_batch(users: int, direction: str, fast: Settings) -> None:
    previous = _publish_baseline(fast)
    batch = B.write_valid_batch(fast.staging_dir, users=users, seed=1, start=B.START)
    result = _validate(batch, fast)
    failure = _failure(result, "events", "expect_table_row_count_to_be_between", None)
    assert failure.message.startswith(
        f"events has {result.row_counts['events']:,} rows, {direction}"
    )
    assert f"had {previous['events']:,}" in failure.message
    assert failure.unexpected_count == result.row_counts["events"]
    # dimension tables are snapshots or deltas: their size is not an anomaly
    assert not [f for f in result.failures if f.table in ("users", "items", "artists")]


def test_shorter_window_is_not_a_volume_anomaly(fast: Settings) -> None:
    _publish_baseline(fast)
    batch = B.write_valid_batch(fast.staging_dir, users=50, days=1, start=B.START)
    result = _validate(batch, fast)
    assert result.success, result.summary_lines()


def test_ids_published_in_the_lake_are_accepted(fast: Settings) -> None:
    _publish_baseline(fast)
    # the next batch: new plays only, by the same listeners of the same catalogue
    batch = B.write_valid_batch(fast.staging_dir, users=50, start=B.START + timedelta(days=3))
    for table in ("users", "items", "artists"):
        shutil.rmtree(batch / table)
    result = _validate(batch, fast)
    assert result.success, result.summary_lines()
    assert "users" not in result.row_counts


def test_reference_unknown_to_batch_and_lake_is_still_caught(fast: Settings) -> None:
    _publish_baseline(fast)
    batch = B.write_valid_batch(fast.staging_dir, users=50, start=B.START + timedelta(days=3))
    shutil.rmtree(batch / "users")
    key = B.set_cell(batch, "events", C.USER_ID, 0, "u7777777")
    failure = _failure(_validate(batch, fast), "events", IN_SET, C.USER_ID)
    assert failure.unexpected_count == 1
    _sample_has(failure, C.EVENT_ID, key)


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("events", C.EVENT_ID, "../../etc/passwd"),
        ("events", C.SESSION_ID, "session\nwith a newline"),
        ("ad_impressions", C.AD_ID, "a" * 10_000_000),
    ],
    ids=["path", "newline", "10MB"],
)
def test_ids_serving_would_refuse_are_caught(
    table: str, column: str, value: str, fast: Settings
) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    B.set_cell(batch, table, column, 3, value)
    result = _validate(batch, fast)
    failure = _failure(result, table, IN_SET, column)
    assert failure.rule == f"{table}.{column}.id_format"
    assert "that serving would refuse: ids must be 1..128 characters" in failure.message
    assert failure.unexpected_count == 1 and len(failure.message) < 1_000
    assert len(result.failures) == 1, result.summary_lines()
    assert Path(result.report_path or "").stat().st_size < 200_000
