"""The validation gate end to end on small hand-built batches: verdict, failures, reports."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from tests.fixtures import batches as B
from validation import ValidationResult, validate_batch
from validation.findings import Finding, Findings, jsonable, message
from validation.volume import MIN_BASELINE_ROWS, volume_bands


def _with(settings: Settings, **rules: object) -> Settings:
    return settings.model_copy(update={"validation": settings.validation.model_copy(update=rules)})


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Settings without Data Docs (the slow part of a run)."""
    return _with(settings, build_data_docs=False)


def test_valid_batch_passes_with_reports_and_data_docs(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    batch = B.write_valid_batch(settings.staging_dir)
    info = lake.read_batch_info(batch)
    result = validate_batch(batch, settings)
    assert result.success, result.summary_lines()
    assert result.failures == []
    assert result.batch_id == info.batch_id
    assert result.row_counts == info.row_counts
    assert result.checks_run > 50
    # the JSON report is the result; the Markdown summary sits beside it
    report = Path(result.report_path or "")
    assert report == settings.reports_dir / "validation" / f"{info.batch_id}.json"
    assert json.loads(report.read_text()) == result.to_dict()
    summary = report.with_suffix(".md").read_text()
    assert summary.startswith(f"# Validation of batch {info.batch_id}: passed")
    # GX Data Docs: one site per batch, with a page per suite run
    docs = Path(result.data_docs or "")
    assert docs == settings.reports_dir / "data_docs" / info.batch_id / "index.html"
    assert docs.is_file()
    pages = {p.parent.parent.parent.name for p in docs.parent.glob("validations/*/*/*/*/*.html")}
    assert pages == {"rows", "table"}
    # no GX progress bars on the terminal
    assert "Calculating Metrics" not in capfd.readouterr().err
    # validation reads a staged batch: it neither moves nor changes it
    assert lake.read_batch_info(batch) == info
    assert not settings.lake_dir.exists()


def test_importing_validation_does_not_import_great_expectations() -> None:
    code = "import sys, validation; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_failures_merge_across_parts_with_capped_samples(settings: Settings) -> None:
    settings = _with(settings, build_data_docs=False, sample_rows=3)
    batch = B.write_valid_batch(settings.staging_dir)
    keys = [B.set_cell(batch, "events", C.MS_PLAYED, row, -1, part=0) for row in range(2)]
    keys += [B.set_cell(batch, "events", C.MS_PLAYED, row, -2, part=2) for row in range(3)]
    (failure,) = validate_batch(batch, settings).failures
    assert (failure.table, failure.check, failure.column) == (
        "events",
        "expect_column_values_to_be_between",
        C.MS_PLAYED,
    )
    assert failure.rule == "events.ms_played.range"
    assert failure.unexpected_count == 5
    assert failure.message == "5 rows have ms_played below 0; found -1, -2"
    assert len(failure.sample) == 3
    assert [row[C.EVENT_ID] for row in failure.sample] == keys[:3]
    assert failure.sample[0]["_file"] == "events/date=2026-01-05/part-0.parquet"
    json.dumps([row for row in failure.sample])  # samples are JSON-ready as they are


def test_failure_report_lists_each_failure_with_rows(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    key = B.set_cell(batch, "users", C.COUNTRY, 1, "Atlantis")
    result = validate_batch(batch, fast)
    assert result.summary_lines() == [
        "users.country: expect_column_values_to_be_in_set: 1 row has country outside "
        "{US, GB, DE, FR, SE, BR, ...}; found 'Atlantis' (1 rows)"
    ]
    summary = Path(result.report_path or "").with_suffix(".md").read_text()
    assert "FAILED" in summary.splitlines()[0]
    assert "**users.country** `expect_column_values_to_be_in_set`" in summary
    assert f'"user_id": "{key}"' in summary


def test_unique_check_sees_every_part_and_shows_the_pairs(fast: Settings) -> None:
    batch = B.write_valid_batch(fast.staging_dir)
    first = pd.read_parquet(B.first_part(batch, "events"))[C.EVENT_ID]
    B.set_cell(batch, "events", C.EVENT_ID, 9, first[0], part=1)
    (failure,) = validate_batch(batch, fast).failures
    assert failure.message == "1 event id appears more than once (2 rows, across parts)"
    assert [row[C.EVENT_ID] for row in failure.sample] == [first[0], first[0]]


def test_missing_or_broken_batch_folder_is_a_failure(fast: Settings, tmp_path: Path) -> None:
    result = validate_batch(tmp_path / "nope", fast)
    assert not result.success
    assert result.failures[0].check == "batch_present"
    batch = B.write_valid_batch(fast.staging_dir)
    (batch / lake.BATCH_FILE).write_text("{not json")
    failure = validate_batch(batch, fast).failures[0]
    assert failure.check == "batch_info"
    assert "batch.json cannot be read (JSONDecodeError" in failure.message
    batch = B.write_valid_batch(fast.staging_dir)
    info = lake.read_batch_info(batch)
    info.window_end = info.window_start - timedelta(days=1)
    lake.update_batch_info(batch, info)
    result = validate_batch(batch, fast)
    assert [f.rule for f in result.failures] == ["batch.*.batch_window"]
    assert "ends (2026-01-04) before it starts (2026-01-05)" in result.failures[0].message


def test_volume_band_scales_with_the_window(fast: Settings) -> None:
    baseline = B.write_valid_batch(fast.staging_dir, users=50, days=3)
    counts = lake.publish_batch(baseline, fast.lake_dir)["row_counts"]
    one_day = lake.BatchInfo("b", "x", B.START, B.START)
    bands = volume_bands(fast.lake_dir, one_day, fast.validation)
    assert set(bands) == {"events", "ad_impressions"}  # facts with enough rows only
    assert counts["onboarding"] < MIN_BASELINE_ROWS
    events = bands["events"]
    assert events.expected_rows == counts["events"] / 3
    assert events.min_rows == int(counts["events"] / 3 * fast.validation.volume_min_ratio)
    assert events.max_rows == int(counts["events"] / 3 * fast.validation.volume_max_ratio)
    assert volume_bands(fast.lake_dir / "empty", one_day, fast.validation) == {}


def test_previous_batch_of_the_same_size_passes_the_volume_check(fast: Settings) -> None:
    baseline = B.write_valid_batch(fast.staging_dir, users=40)
    lake.publish_batch(baseline, fast.lake_dir)
    batch = B.write_valid_batch(fast.staging_dir, users=40, seed=3, start=B.START + timedelta(3))
    result: ValidationResult = validate_batch(batch, fast)
    assert result.success, result.summary_lines()


def test_findings_of_one_rule_merge_and_keep_the_first_samples() -> None:
    findings = Findings(sample_rows=2)
    for n, label in ((2, "a"), (3, "b")):
        findings.add(
            Finding(
                rule="t.c.not_null",
                table="t",
                check="expect_column_values_to_not_be_null",
                column="c",
                kind="not_null",
                count=n,
                samples=[{"k": f"{label}{i}"} for i in range(n)],
                files=[label],
            )
        )
    (failure,) = findings.failures()
    assert failure.unexpected_count == 5
    assert failure.sample == [{"k": "a0"}, {"k": "a1"}]
    assert failure.message == "5 rows have no c (null)"


def test_jsonable_cells() -> None:
    assert jsonable(pd.Timestamp("2026-01-05T01:02:03Z")) == "2026-01-05T01:02:03+00:00"
    assert jsonable(float("nan")) is None and jsonable(pd.NA) is None
    assert jsonable(pd.Series([3]).iloc[0]) == 3


def test_custom_messages_name_the_files() -> None:
    finding = Finding(
        rule="r",
        table="events",
        check="expect_column_to_exist",
        column="device",
        kind="custom",
        files=["events/a.parquet", "events/b.parquet"],
        details={"message": "events.device: column is missing"},
    )
    assert message(finding) == ("events.device: column is missing (2 files, e.g. events/a.parquet)")


def test_an_expectation_that_cannot_run_is_a_failure_not_a_crash() -> None:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    from validation.findings import from_gx_result
    from validation.gx_runtime import GxRuntime

    meta = {"rule": "t.nope.range", "table": "t", "column": "nope", "kind": "range"}
    runtime = GxRuntime("unit", sample_rows=5)
    runtime.register(
        gx.ExpectationSuite(
            name="t.rows",
            expectations=[gxe.ExpectColumnValuesToBeBetween(column="nope", min_value=0, meta=meta)],
        )
    )
    frame = pd.DataFrame({"a": [1, 2]})
    (result,) = runtime.run("t.rows", frame, "t/part-0.parquet")
    finding = from_gx_result(
        result, frame, sample_columns=["a"], sample_rows=5, skip_columns=set(), schema_drifted=False
    )
    assert finding is not None and finding.kind == "error"
    assert message(finding) == (
        "expect_column_values_to_be_between on t.nope could not be evaluated: "
        'Error: The column "nope" in BatchData does not exist.'
    )
