"""The ingest flow end to end on a real (temporary) Prefect server."""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossfade.config import load_settings
from crossfade.data import lake
from flows.ingest import BatchRejected, ingest_flow
from tests.fixtures.batches import write_valid_batch

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def small_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the flow (which loads its own settings) simulate a small world."""
    for key, value in {
        "USERS": 150,
        "DAYS": 5,
        "ARTISTS": 50,
        "TRACKS": 400,
        "EPISODES": 20,
    }.items():
        monkeypatch.setenv(f"CROSSFADE_SIMULATOR__{key}", str(value))


def _lake_files(lake_dir: Path) -> list[Path]:
    return sorted(lake_dir.rglob("*.parquet")) if lake_dir.exists() else []


def test_simulated_world_is_published_then_reingest_is_a_noop(small_world: None) -> None:
    settings = load_settings()
    outcome = ingest_flow()
    assert outcome["status"] == "published"
    assert outcome["rows_received"] == outcome["rows_accepted"] > 0
    assert Path(outcome["report_path"]).is_file()
    if settings.validation.build_data_docs:
        assert Path(outcome["data_docs"]).is_file()
    events = lake.read_lake_table(settings.lake_dir, "events")
    assert (
        events.num_rows == json.loads(Path(outcome["location"]).read_text())["row_counts"]["events"]
    )
    assert not any(settings.staging_dir.iterdir())

    again = ingest_flow()
    assert again["status"] == "skipped"
    assert lake.read_lake_table(settings.lake_dir, "events").num_rows == events.num_rows


def test_a_corrupt_batch_is_quarantined_whole_and_the_lake_untouched() -> None:
    settings = load_settings()
    batch = write_valid_batch(settings.staging_dir)
    events_file = lake.table_files(batch, "events")[0]
    table = pq.read_table(events_file)
    ids = table["event_id"].to_pylist()
    ids[1] = ids[0]  # a duplicated event id
    column = table.schema.get_field_index("event_id")
    pq.write_table(table.set_column(column, "event_id", pa.array(ids)), events_file)
    received = sum(lake.staged_row_counts(batch)[0].values())
    with pytest.raises(BatchRejected) as info:
        ingest_flow(batch=str(batch))
    outcome = info.value.outcome
    assert outcome.status == "quarantined"
    assert outcome.rows_quarantined == outcome.rows_received == received
    assert outcome.rows_accepted == 0
    assert any("event_id" in line for line in outcome.failures)
    assert _lake_files(settings.lake_dir) == []
    kept = Path(outcome.location)
    assert sum(lake.staged_row_counts(kept)[0].values()) == received
    assert json.loads((kept / lake.REPORT_FILE).read_text())["success"] is False


def test_an_unreadable_import_is_kept_in_quarantine(tmp_path: Path) -> None:
    settings = load_settings()
    garbage = tmp_path / "plays.csv"
    garbage.write_bytes(b"\xff\xfe\x00\x00garbage\x81\x82")
    with pytest.raises(BatchRejected) as info:
        ingest_flow(fmt="interactions", path=str(garbage))
    kept = Path(info.value.outcome.location)
    assert (kept / "raw" / "plays.csv").read_bytes() == garbage.read_bytes()
    assert "plays.csv" in info.value.outcome.failures[0]
    assert _lake_files(settings.lake_dir) == []


def test_movielens_100k_from_the_recbole_wheel_ingests_through_the_contracts() -> None:
    settings = load_settings()
    ml100k = importlib.resources.files("recbole") / "dataset_example" / "ml-100k"
    outcome = ingest_flow(fmt="recbole", path=str(ml100k))
    assert outcome["status"] == "published"
    assert lake.read_lake_table(settings.lake_dir, "events").num_rows == 100_000
    assert len(lake.known_keys(settings.lake_dir, "users")) == 943
    assert len(lake.known_keys(settings.lake_dir, "items")) == 1_682


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the real `crossfade` command against this session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    exe = Path(sys.executable).with_name("crossfade")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )


def test_main_job_runs_from_the_command_line(
    small_world: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One lifecycle run from the command line (tests/integration/test_lifecycle.py runs two);
    # the serving stack is stopped at the end instead of left serving.
    monkeypatch.setenv("CROSSFADE_LIFECYCLE__KEEP_SERVING", "false")
    monkeypatch.setenv("CROSSFADE_SIMULATOR__DAYS", "8")  # the ranker logs 4 days of slates
    monkeypatch.setenv("CROSSFADE_LIFECYCLE__HOLDBACK_DAYS", "2")  # run 1 sees 6 of them
    result = _cli(["run", "--runs", "1"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run 1: completed" in result.stdout, result.stdout[-3000:]
    (report,) = (load_settings().reports_dir / "runs").glob("*/index.html")
    page = report.read_text()
    assert "<td>ingest</td><td class='pass'>published</td>" in page
    assert "<td>release</td><td class='pass'>live</td>" in page
    assert "serving stack stopped" in result.stdout


def test_cli_rejects_a_bad_batch_with_exit_1_and_the_reason(tmp_path: Path) -> None:
    settings = load_settings()
    batch = write_valid_batch(settings.staging_dir)
    (batch / "events" / "extra.parquet").write_text("definitely not parquet")
    result = _cli(["data", "ingest", "--batch", str(batch)], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "quarantined" in result.stdout
    assert "not a Parquet file" in result.stdout + result.stderr
