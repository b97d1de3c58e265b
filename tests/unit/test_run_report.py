"""The lifecycle run report: every stage appears with its status, facts, links and plots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from crossfade.run_report import StageReport, rollout_timeline, write_run_report


def test_report_lists_every_stage_with_links_and_plots(tmp_path: Path) -> None:
    start = datetime(2026, 11, 29, 8, tzinfo=UTC)
    transitions = [
        {"at": start, "phase": "SHADOW", "split": 0},
        {"at": start + timedelta(seconds=20), "phase": "CANARY", "split": 5},
        {"at": start + timedelta(seconds=40), "phase": "ROLLED_BACK", "split": 0},
    ]
    windows = [
        {"at": start + timedelta(seconds=15), "verdict": "PASS"},
        {"at": start + timedelta(seconds=35), "verdict": "BREACH"},
    ]
    png = rollout_timeline(transitions, windows)
    assert png is not None and png.startswith(b"\x89PNG")
    assert rollout_timeline([], []) is None
    docs = tmp_path / "reports" / "data_docs" / "index.html"
    stages = [
        StageReport("ingest", "published", "1,234 events accepted", {"batch": "b1"},
                    {"Data Docs": str(docs)}),
        StageReport("rollout", "rolled_back", "p99 latency breached <50 ms>", figures=[png],
                    rows=[{"window": 1, "verdict": "PASS"}, {"window": 2, "verdict": "BREACH"}]),
        StageReport("experiment", "not run", "no challenger to test"),
    ]  # fmt: skip
    path = write_run_report(tmp_path / "reports" / "runs" / "r1", "Run r1", stages, {"run": "r1"})
    page = path.read_text()
    for name in ("ingest", "rollout", "experiment"):
        assert f"<td>{name}</td>" in page
    assert "href='../../data_docs/index.html'" in page
    assert "p99 latency breached &lt;50 ms&gt;" in page
    assert page.count("data:image/png;base64,") == 1
    assert "class='fail'" in page and "class='pass'" in page
