"""Simulator throughput and memory: events per second and peak RSS for 10k and 100k listeners.

Every run is its own subprocess (`python -m benchmarks.simulate --worker ...`), so one size's
memory never pollutes another's peak: the worker reports the wall time of `simulate()` alone
(imports excluded) and its peak resident set size (`ru_maxrss`). The 10k-listener world is the
baseline (median of several runs); the 100k world runs fewer times (each takes ~10x longer)
and its events/s is reported relative to the baseline measured in the same invocation.

Run: `python -m benchmarks.simulate [--repeats-small 3] [--repeats-large 1] [--days 14]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COMMAND = "python -m benchmarks.simulate"
SIZES = (10_000, 100_000)
SEED = 42
START_DATE = "2026-01-05"  # pinned (the default start is relative to today)


def worker(users: int, days: int, seed: int, root: Path) -> dict[str, Any]:
    """Simulate one world under `root` and measure it (runs inside the subprocess)."""
    import pandas  # noqa: F401  (pyarrow imports it on first use: keep that out of the timing)

    from crossfade.config import SimulatorSettings
    from crossfade.data.lake import read_batch_info
    from crossfade.data.simulator import simulate

    sim = SimulatorSettings.model_validate({"users": users, "days": days, "start_date": START_DATE})
    start = time.perf_counter()
    batch = simulate(sim, seed, root / "staging", root / "truth")
    seconds = time.perf_counter() - start
    info = read_batch_info(batch)
    size = sum(p.stat().st_size for p in batch.rglob("*.parquet"))
    return {
        "users": users,
        "days": days,
        "tracks": sim.tracks,
        "seconds": seconds,
        "events": info.row_counts["events"],
        "ad_impressions": info.row_counts["ad_impressions"],
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parquet_mb": size / 2**20,
    }


def measure(users: int, days: int, seed: int) -> dict[str, Any]:
    """One run in a fresh interpreter, in a throw-away data folder."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="crossfade-bench-") as tmp:
        args = [sys.executable, "-m", "benchmarks.simulate", "--worker"]
        args += [str(users), str(days), str(seed), tmp]
        out = subprocess.run(args, cwd=repo, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"simulate benchmark worker ({users} users) failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of repeated runs of one size."""
    seconds = statistics.median(r["seconds"] for r in runs)
    events = statistics.median(r["events"] for r in runs)
    return {
        **runs[0],
        "runs": len(runs),
        "seconds": seconds,
        "events": events,
        "events_per_s": statistics.median(r["events"] / r["seconds"] for r in runs),
        "peak_mb": statistics.median(r["peak_mb"] for r in runs),
        "spread": (min(r["seconds"] for r in runs), max(r["seconds"] for r in runs)),
    }


def table(results: list[dict[str, Any]], load: float) -> str:
    """The markdown table of docs/benchmarks.md (`load`: 1-minute load average at start)."""
    base = results[0]["events_per_s"]
    rows = [
        "| listeners | days | tracks | runs | events | ad impressions | wall s (median) "
        "| events/s | vs 10k | peak RSS MB | Parquet MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r['users']:,} | {r['days']} | {r['tracks']:,} | {r['runs']} "
            f"| {int(r['events']):,} | {int(r['ad_impressions']):,} | {r['seconds']:.1f} "
            f"| {r['events_per_s']:,.0f} | {r['events_per_s'] / base:.2f}x "
            f"| {r['peak_mb']:,.0f} | {r['parquet_mb']:,.0f} |"
        )
    notes = (
        "\nEach run is a separate process; peak RSS is that process's `ru_maxrss` (world, "
        "rotations and one day of plays are held in memory, never the whole log). Wall time "
        "is `simulate()` alone: world build, truth, dimension tables, and day-by-day "
        "generation, Arrow conversion and zstd Parquet writes. The 10k row is the median of "
        "its runs and the baseline of the ratio; the 100k row is fewer runs (noted above) "
        "because each takes ~10x longer. Default catalogue (400 artists, 4,000 tracks, 300 "
        f"episodes), seed {SEED}, window starting {START_DATE}. 10k wall-time spread over "
        f"its runs: {results[0]['spread'][0]:.1f}-{results[0]['spread'][1]:.1f} s; load "
        f"average when the benchmark started: {load:.2f} (the machine is shared, so timings "
        "are noisy).\n"
    )
    return "\n".join(rows) + "\n" + notes


def main(argv: list[str] | None = None) -> None:
    """Measure both sizes and rewrite the `simulate` section of docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--worker", nargs=4, metavar=("USERS", "DAYS", "SEED", "ROOT"))
    parser.add_argument("--repeats-small", type=int, default=3)
    parser.add_argument("--repeats-large", type=int, default=1)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args(argv)
    if args.worker:
        users, days, seed, root = args.worker
        print(json.dumps(worker(int(users), int(days), int(seed), Path(root))))
        return
    load = os.getloadavg()[0]
    results = []
    for users, repeats in zip(SIZES, (args.repeats_small, args.repeats_large), strict=True):
        runs = []
        for k in range(repeats):
            run = measure(users, args.days, SEED)
            print(
                f"{users:>7,} listeners run {k + 1}/{repeats}: {run['events']:,} events in "
                f"{run['seconds']:.1f}s, peak {run['peak_mb']:,.0f} MB",
                flush=True,
            )
            runs.append(run)
        results.append(summarise(runs))
    body = table(results, load)
    print(body)
    from benchmarks.report import write_section

    write_section("simulate", body, COMMAND)


if __name__ == "__main__":
    main()
