"""Validation throughput: rows per second through `validate_batch` for ~100k and ~1M events.

Batches are hand-built valid batches (`tests/fixtures/batches.write_valid_batch`, numpy only,
so the numbers do not depend on the simulator), 5 daily events parts plus the five other
tables. Each size is validated 3 times in this process after a warm-up (GX import and first
context excluded), without Data Docs; the median is reported and the ~100k batch is the
baseline of the ratio. One more run per size measures the cost of rendering Data Docs, and a
fresh subprocess per size validates once more to report the peak RSS of validation alone
(generation excluded), which shows memory bounded by the part size rather than the batch.

Run: `python -m benchmarks.validate [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import median_time, write_section
from crossfade.config import Settings, load_settings
from crossfade.data import lake
from tests.fixtures.batches import write_valid_batch
from validation import validate_batch

COMMAND = "python -m benchmarks.validate"
DAYS = 5
EVENTS_PER_USER_DAY = 8
# listeners -> events = listeners x DAYS x EVENTS_PER_USER_DAY
SIZES = {"~100k": 2_500, "~1M": 25_000}


def _settings(root: Path, docs: bool) -> Settings:
    return load_settings("local", data_root=root, validation={"build_data_docs": docs})


def _batch(root: Path, users: int) -> Path:
    return write_valid_batch(
        root / "staging", users=users, days=DAYS, events_per_user_day=EVENTS_PER_USER_DAY
    )


def worker(batch: Path, root: Path) -> dict[str, Any]:
    """Validate once in a fresh interpreter and report time and peak RSS (subprocess side)."""
    settings = _settings(root, docs=False)
    start = time.perf_counter()
    result = validate_batch(batch, settings)
    return {
        "seconds": time.perf_counter() - start,
        "success": result.success,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _peak_rss(batch: Path, root: Path) -> float:
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.validate", "--worker", str(batch), str(root)],
        capture_output=True,
        text=True,
        check=True,
        cwd=repo,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["success"], "the benchmark batch must be valid"
    return float(report["peak_mb"])


def measure(label: str, users: int, repeats: int, root: Path) -> dict[str, Any]:
    """Median validation time of one batch size, plus Data Docs cost and peak RSS."""
    batch = _batch(root, users)
    counts = lake.read_batch_info(batch).row_counts
    settings = _settings(root, docs=False)
    runs: list[float] = []

    def once() -> Any:
        start = time.perf_counter()
        result = validate_batch(batch, settings)
        runs.append(time.perf_counter() - start)
        return result

    seconds, result = median_time(once, repeats)
    assert result.success, result.summary_lines()
    start = time.perf_counter()
    validate_batch(batch, _settings(root, docs=True))
    with_docs = time.perf_counter() - start
    return {
        "label": label,
        "users": users,
        "events": counts["events"],
        "rows": sum(counts.values()),
        "parts": len(lake.table_files(batch, "events")),
        "seconds": seconds,
        "spread": (min(runs), max(runs)),
        "with_docs": with_docs,
        "checks": result.checks_run,
        "peak_mb": _peak_rss(batch, root),
    }


def render(rows: list[dict[str, Any]], repeats: int, load: float) -> str:
    """The Markdown section for docs/benchmarks.md."""
    base = rows[0]["events"] / rows[0]["seconds"]
    lines = [
        "| batch | events | all rows | events parts | runs | wall s (median) | events/s "
        "| all rows/s | vs ~100k | with Data Docs s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        eps = r["events"] / r["seconds"]
        lines.append(
            f"| {r['label']} | {r['events']:,} | {r['rows']:,} | {r['parts']} | {repeats} "
            f"| {r['seconds']:.2f} | {eps:,.0f} | {r['rows'] / r['seconds']:,.0f} "
            f"| {eps / base:.2f}x | {r['with_docs']:.2f} | {r['peak_mb']:,.0f} |"
        )
    spreads = "; ".join(f"{r['label']} {r['spread'][0]:.2f}-{r['spread'][1]:.2f} s" for r in rows)
    lines += [
        "",
        "Valid hand-built batches (`tests/fixtures/batches.py`): all six tables, events and ad "
        f"impressions in {DAYS} daily parts, {EVENTS_PER_USER_DAY} plays per listener-day, items "
        "= 2 x listeners, ad impressions = 2 per listener-day. Wall time is one "
        "`validate_batch` call without Data Docs (file checks, Arrow schema checks, reference "
        "joins, the GX rows suite per group of parts up to 500k rows, the GX table suite per "
        "table, reports), after a warm-up that pays the GX import; the ~100k batch is the "
        "baseline of the ratio. *With Data Docs* is one extra run that also renders the HTML "
        "site. Peak RSS is a separate process that only validates (generation excluded). "
        f"Spread over the runs: {spreads}. Load average when the benchmark started: {load:.2f} "
        "(the machine is shared, so timings are noisy).",
    ]
    return "\n".join(lines)


def main() -> None:
    """Measure both sizes and rewrite the `validate` section of docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("BATCH", "ROOT"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), Path(args.worker[1]))))
        return

    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="crossfade-bench-validate-") as tmp:
        warm = Path(tmp) / "warm"
        validate_batch(_batch(warm, 30), _settings(warm, docs=False))
        for label, users in SIZES.items():
            root = Path(tmp) / label.strip("~")
            rows.append(measure(label, users, args.repeats, root))
            r = rows[-1]
            print(
                f"{label}: {r['events']:,} events in {r['seconds']:.2f} s "
                f"({r['events'] / r['seconds']:,.0f} events/s), docs {r['with_docs']:.2f} s, "
                f"peak RSS {r['peak_mb']:,.0f} MB",
                flush=True,
            )
    body = render(rows, args.repeats, load)
    write_section("validate", body, COMMAND)
    print(body)


if __name__ == "__main__":
    main()
