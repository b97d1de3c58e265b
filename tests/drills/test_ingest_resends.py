"""Drills: re-sent, renamed, overlapping and implausible exports, through `crossfade data ingest`.

Run the way users run it (the real command, as a subprocess), and check what they see: one
clean panel per outcome (never a traceback), the line rows received = accepted +
quarantined + duplicates, and a lake in which every interaction is published exactly once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import load_settings
from crossfade.data import lake

# One export: its rows keep their times whichever part of it is sent, and when.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
ROWS = re.compile(
    r"received ([\d,]+) = accepted ([\d,]+) \+ quarantined ([\d,]+) \+\s+duplicates ([\d,]+)"
)


def _cli(args: list[str], cwd: Path, server: bool = True) -> subprocess.CompletedProcess[str]:
    """The real `crossfade` command; with `server`, against this session's Prefect server."""
    env = {**os.environ, "COLUMNS": "200"}
    if server:
        from prefect.settings import PREFECT_API_URL

        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    exe = Path(sys.executable).with_name("crossfade")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900
    )


def _ingest(path: Path, cwd: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    result = _cli(["data", "ingest", "--format", "interactions", "--path", str(path)], cwd)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    assert "| INFO" not in out and "| ERROR" not in out, out  # Prefect logs go to a file
    return result, out


def _balanced(out: str) -> tuple[int, int, int, int]:
    """The CLI's rows line, checked: received = accepted + quarantined + duplicates."""
    match = ROWS.search(out)
    assert match, out
    received, accepted, quarantined, dups = (int(g.replace(",", "")) for g in match.groups())
    assert received == accepted + quarantined + dups, out
    return received, accepted, quarantined, dups


def _export(n: int, start: int = 0) -> pd.DataFrame:
    """Rows start..start+n-1 of one listening export: a play a minute, ending in the past."""
    base = BASE
    rows = range(start, start + n)
    return pd.DataFrame(
        {
            "user_id": [f"u{i % 50}" for i in rows],
            "item_id": [f"t{(i * 7) % 400}" for i in rows],
            "timestamp": [(base + timedelta(minutes=i)).isoformat() for i in rows],
        }
    )


def _write(frame: pd.DataFrame, path: Path, **kwargs: object) -> Path:
    frame.to_csv(path, index=False, **kwargs)  # type: ignore[arg-type]
    return path


def test_a_wrong_path_or_a_symlink_loop_is_one_panel_before_any_server(tmp_path: Path) -> None:
    loop = tmp_path / "loop-a"
    loop.symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(loop)
    cases = {
        tmp_path / "no-such-export.csv": "not found; check the path",
        loop: "symbolic link loop",
    }
    for path, words in cases.items():
        result = _cli(
            ["data", "ingest", "--format", "interactions", "--path", str(path)],
            tmp_path,
            server=False,
        )
        out = result.stdout + result.stderr
        assert result.returncode == 2, out
        assert words in out and str(path.name) in out
        assert "Traceback" not in out and "temporary server" not in out, out
        assert out.count("╭") == 1, out  # one panel
    settings = load_settings()
    assert not settings.prefect_log.exists()  # Prefect never started
    assert not settings.staging_dir.exists() and not settings.quarantine_dir.exists()


@pytest.mark.usefixtures("prefect_server")
def test_renamed_and_overlapping_resends_publish_each_event_once(tmp_path: Path) -> None:
    settings = load_settings()
    first = _write(_export(2_000), tmp_path / "rows-0-1999.csv")
    result, out = _ingest(first, tmp_path)
    assert result.returncode == 0 and "published" in out, out
    assert _balanced(out)[3] == 0

    renamed = tmp_path / "export-final-v2.csv"
    renamed.write_bytes(first.read_bytes())
    result, out = _ingest(renamed, tmp_path)
    assert result.returncode == 0 and "skipped" in out, out
    assert "identical content already published" in out and "whatever its file name" in out
    received, accepted, _, dups = _balanced(out)
    assert accepted == 0 and dups == received > 0

    overlap = _write(_export(2_000, start=1_000), tmp_path / "rows-1000-2999.csv")
    result, out = _ingest(overlap, tmp_path)
    assert result.returncode == 0 and "published" in out, out
    _balanced(out)
    assert "events     received 2,000, accepted 1,000, quarantined 0, duplicates 1,000" in out
    assert "1,000 already in the lake" in out

    whole = _write(_export(3_000), tmp_path / "everything.csv")
    result, out = _ingest(whole, tmp_path)
    assert result.returncode == 0 and "nothing new" in out, out
    assert _balanced(out)[1] == 0

    events = lake.read_lake_table(settings.lake_dir, "events").to_pandas()
    assert len(events) == 3_000 and events[C.EVENT_ID].is_unique
    assert len(events.drop_duplicates([C.USER_ID, C.ITEM_ID, C.TS])) == 3_000


@pytest.mark.usefixtures("prefect_server")
def test_copies_and_implausible_exports(tmp_path: Path) -> None:
    settings = load_settings()
    copies = _write(pd.concat([_export(1)] * 10_000), tmp_path / "copies.csv")
    result, out = _ingest(copies, tmp_path)
    assert result.returncode == 0 and "published" in out, out
    assert "events     received 10,000, accepted 1, quarantined 0, duplicates 9,999" in out
    assert lake.read_lake_table(settings.lake_dir, "events").num_rows == 1
    before = lake.manifests(settings.lake_dir)

    epoch = _export(3_000, start=10)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    epoch.loc[:99, "timestamp"] = [(start + timedelta(seconds=i)).isoformat() for i in range(100)]
    result, out = _ingest(_write(epoch, tmp_path / "epoch.csv"), tmp_path)
    assert result.returncode == 1 and "quarantined" in out, out
    assert "100 rows have implausible ts" in out and "validation.earliest_event" in out
    _balanced(out)

    bad = _export(50, start=20_000)
    bad.loc[0, "item_id"] = "../../etc/passwd"
    bad.loc[1, "user_id"] = "listener\nwith a newline"
    bad.loc[2, "user_id"] = "u" * 10_000_000  # 10 MB
    result, out = _ingest(_write(bad, tmp_path / "ids.csv"), tmp_path)
    assert result.returncode == 1 and "quarantined" in out, out
    assert "that serving would refuse" in out and "newline" in out, out
    assert _balanced(out)[0] == 50
    assert len(out) < 20_000  # the 10 MB id is never printed whole
    reports = settings.quarantine_dir.glob("*/report.json")
    assert max(p.stat().st_size for p in reports) < 200_000  # nor written whole to a report

    wide = _write(_export(3_000, start=40_000), tmp_path / "utf16.csv", encoding="utf-16")
    result, out = _ingest(wide, tmp_path)
    assert result.returncode == 1, out
    assert "UTF-16 little-endian with a byte-order mark" in out and "binary" not in out
    assert _balanced(out)[0] == 3_000  # rows counted although the file could not be parsed
    assert lake.manifests(settings.lake_dir) == before  # nothing implausible was published
