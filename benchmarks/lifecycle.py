"""Lifecycle scaling: wall time and peak memory of each data stage as the world grows.

The data stages of the lifecycle (`flows/lifecycle.py`) are ingest -> bot flags -> features ->
candidates -> ranker. For each world size of a ladder (listeners; tracks = 4 x listeners capped,
14 days) every stage runs as its own flow in a FRESH subprocess against an isolated data root,
so the stage's peak resident set size is that process's own (`os.wait4` rusage, `ru_maxrss`).
One real `prefect server start` on a free loopback port serves every stage of the benchmark
(`PREFECT_API_URL`), so no stage pays the ~25 s temporary-server start. The child reports the
wall time of the flow call alone (imports excluded) and the RSS it had after its imports.

Per stage, the growth exponent is the log-log slope of flow time against the number of events
in the lake (wall time, and CPU time of the flow call, which a shared machine distorts less);
a slope above `WORSE_THAN_LINEAR` flags the stage as worse than linear. Release
and experiment are left out: they scale with simulated traffic (listeners x think time x
rollout windows), not with the lake (see the section text).

Run: `python -m benchmarks.lifecycle [--sizes 2500,5000,10000] [--quick] [--repeats 1]
[--until STAGE] [--save results.json] [--render results.json] [--notes findings.md]
[--profile-dir DIR] [--no-doc]`. With `--save`, results accumulate in that file
across invocations (a size measured again replaces its old rows), so a large size can be run
on its own and the section written from everything measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

COMMAND = "python -m benchmarks.lifecycle"
REPO = Path(__file__).resolve().parents[1]
PLOT_LINK = "img/lifecycle_scaling.png"  # relative to docs/, where benchmarks.md lives
PLOT = REPO / "docs" / PLOT_LINK
DEFAULT_SIZES = (2_500, 5_000, 10_000)
QUICK_SIZES = (300, 600)
DAYS = 14
TRACKS_PER_LISTENER = 4
TRACK_CAP = 20_000
WORSE_THAN_LINEAR = 1.15
STAGE_TIMEOUT_S = 3 * 3600
SEED = 42

# stage name -> (module, flow function); every flow takes `profile` and reads CROSSFADE_* env.
STAGES: dict[str, tuple[str, str]] = {
    "ingest": ("flows.ingest", "ingest_flow"),
    "bot flags": ("flows.bots", "flag_bots_flow"),
    "features": ("flows.features", "features_flow"),
    "candidates": ("flows.train", "train_candidates_flow"),
    "ranker": ("flows.train_ranker", "train_ranker_flow"),
}


@dataclass
class StageResult:
    """One stage run at one world size: its cost and the data it saw."""

    listeners: int
    tracks: int
    stage: str
    events: int
    seconds: float  # the flow call alone
    process_seconds: float  # the whole subprocess, imports and Prefect client included
    peak_rss_mb: float
    import_rss_mb: float  # RSS after imports, before the flow ran
    repeat: int = 0
    cpu_seconds: float | None = None  # CPU (user + system, all threads) of the flow call
    load: float | None = None  # 1-minute load average when the stage ended


@dataclass
class Growth:
    """How one stage's time grows with the number of events."""

    stage: str
    exponent: float  # of flow wall time
    worse_than_linear: bool
    points: int
    cpu_exponent: float | None = None  # of flow CPU time, when every size has it


def world(listeners: int) -> dict[str, int]:
    """The simulated world of a ladder rung: tracks grow with listeners up to a cap."""
    if listeners < 1:
        raise ValueError(f"a world needs at least one listener, got {listeners}")
    tracks = max(min(TRACKS_PER_LISTENER * listeners, TRACK_CAP), 10)
    return {"users": listeners, "tracks": tracks, "artists": max(tracks // 10, 2), "days": DAYS}


def growth_exponent(events: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope of log(seconds) against log(events): 1 is linear, 2 quadratic."""
    x, y = np.asarray(events, dtype=float), np.asarray(seconds, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"events and seconds differ in length ({len(x)} vs {len(y)})")
    if len(np.unique(x)) < 2:
        raise ValueError("a growth exponent needs at least two distinct event counts")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("events and seconds must be positive to fit on a log-log scale")
    slope, _ = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope)


def medians(results: Sequence[StageResult]) -> list[StageResult]:
    """One row per (size, stage): the median over repeats (events are deterministic)."""
    groups: dict[tuple[int, str], list[StageResult]] = {}
    for r in results:
        groups.setdefault((r.listeners, r.stage), []).append(r)
    out = []
    for (listeners, stage), rows in groups.items():
        out.append(
            StageResult(
                listeners,
                rows[0].tracks,
                stage,
                int(statistics.median(r.events for r in rows)),
                statistics.median(r.seconds for r in rows),
                statistics.median(r.process_seconds for r in rows),
                max(r.peak_rss_mb for r in rows),
                statistics.median(r.import_rss_mb for r in rows),
                repeat=len(rows),
                cpu_seconds=_median_or_none([r.cpu_seconds for r in rows]),
                load=_median_or_none([r.load for r in rows]),
            )
        )
    order = list(STAGES)
    return sorted(
        out, key=lambda r: (r.listeners, order.index(r.stage) if r.stage in order else 99)
    )


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def growth(rows: Sequence[StageResult]) -> list[Growth]:
    """Growth exponent per stage over the sizes measured (stages with one size are skipped)."""
    out = []
    for stage in dict.fromkeys(r.stage for r in rows):
        mine = [r for r in rows if r.stage == stage]
        if len({r.events for r in mine}) < 2:
            continue
        k = growth_exponent([r.events for r in mine], [r.seconds for r in mine])
        cpu = [r.cpu_seconds for r in mine]
        k_cpu = (
            growth_exponent([r.events for r in mine], [c for c in cpu if c is not None])
            if all(c is not None and c > 0 for c in cpu)
            else None
        )
        # CPU time is what a loaded machine distorts least: it decides when it is known.
        judged = k if k_cpu is None else k_cpu
        out.append(Growth(stage, k, judged > WORSE_THAN_LINEAR, len(mine), k_cpu))
    return out


def render_table(rows: Sequence[StageResult]) -> str:
    """Markdown table, one row per size and stage, with the per-event cost against the
    smallest size of the same stage (1.00x = linear)."""
    lines = [
        "| listeners | tracks | events | stage | flow s | flow CPU s | process s | peak RSS MB "
        "| RSS after imports MB | load | runs | s per 1M events | vs smallest |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base: dict[str, float] = {}
    for r in rows:
        per_m = r.seconds / max(r.events, 1) * 1e6
        base.setdefault(r.stage, per_m)
        lines.append(
            f"| {r.listeners:,} | {r.tracks:,} | {r.events:,} | {r.stage} | {r.seconds:.1f} "
            f"| {'n/a' if r.cpu_seconds is None else f'{r.cpu_seconds:.1f}'} "
            f"| {r.process_seconds:.1f} | {r.peak_rss_mb:,.0f} | {r.import_rss_mb:,.0f} "
            f"| {'n/a' if r.load is None else f'{r.load:.1f}'} "
            f"| {r.repeat} | {per_m:.1f} | {per_m / base[r.stage]:.2f}x |"
        )
    return "\n".join(lines)


def render_growth(fits: Sequence[Growth]) -> str:
    """Markdown table of growth exponents, naming every stage worse than linear."""
    lines = [
        "| stage | k, wall time (s ~ events^k) | k, CPU time | sizes | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for g in fits:
        verdict = "**worse than linear**" if g.worse_than_linear else "linear or better"
        cpu = "n/a" if g.cpu_exponent is None else f"{g.cpu_exponent:.2f}"
        lines.append(f"| {g.stage} | {g.exponent:.2f} | {cpu} | {g.points} | {verdict} |")
    bad = [g.stage for g in fits if g.worse_than_linear]
    summary = (
        f"Worse than linear (k > {WORSE_THAN_LINEAR}): {', '.join(bad)}."
        if bad
        else f"No stage grows worse than linear (every k <= {WORSE_THAN_LINEAR})."
    )
    return "\n".join(lines) + "\n\n" + summary


def plot(rows: Sequence[StageResult], path: Path) -> Path:
    """Log-log plot of flow time against events per stage, with a slope-1 reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for stage in dict.fromkeys(r.stage for r in rows):
        mine = sorted((r for r in rows if r.stage == stage), key=lambda r: r.events)
        ax.plot([r.events for r in mine], [r.seconds for r in mine], "o-", label=stage)
    if rows:
        lo, hi = min(r.events for r in rows), max(r.events for r in rows)
        anchor = statistics.median(r.seconds for r in rows if r.events == lo)
        ax.plot([lo, hi], [anchor, anchor * hi / lo], "k--", lw=1, label="linear (slope 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events in the lake")
    ax.set_ylabel("flow wall time (s)")
    ax.set_title("crossfade lifecycle: stage time vs events")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section(
    rows: Sequence[StageResult],
    load: tuple[float, float, float],
    sizes_note: str,
    image: str = PLOT_LINK,
    notes: str = "",
) -> str:
    """Body of the `lifecycle` section of docs/benchmarks.md (`image`: the plot, relative to
    docs/)."""
    fits = growth(rows)
    return (
        "Each data stage of the lifecycle runs as its own flow (`ingest_flow`, "
        "`flag_bots_flow`, `features_flow`, `train_candidates_flow`, `train_ranker_flow`) in a "
        "fresh subprocess against its own data root, in lifecycle order, with one real "
        "`prefect server start` on loopback for the whole benchmark. World: tracks = "
        f"{TRACKS_PER_LISTENER} x listeners capped at {TRACK_CAP:,}, artists = tracks / 10, "
        f"{DAYS} days, seed {SEED}, local profile (SQLite online store, MLflow on SQLite); "
        "ingest takes the whole window in one batch (Data Docs on). *flow s*: the flow call "
        "alone; *process s*: the subprocess including imports; *peak RSS*: the subprocess's "
        "`ru_maxrss`. *vs smallest*: seconds per event against the smallest size of the same "
        "stage (1.00x = linear, above = growing faster than the data). The growth exponent is "
        "the log-log slope of flow seconds against events over the sizes measured; *flow CPU "
        "s* is the child's user + system CPU time over the flow call (all its threads), which "
        "a loaded machine distorts far less than wall time, so when it is known the verdict "
        "uses its exponent. "
        f"{sizes_note}\n\n"
        "Release and experiment are not in the ladder: their cost is set by simulated traffic "
        "(`lifecycle.traffic_listeners`, think time, rollout windows and experiment sample "
        "size), not by the events in the lake; serving cost per request is in "
        "`serving_pipeline`.\n\n"
        f"Timings were taken on a machine shared with other jobs (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start), so seconds are noisy; "
        "the ratios and exponents, measured in one invocation, are the result to read; *load* "
        "is the 1-minute load average when each stage ended.\n\n"
        + render_table(rows)
        + "\n\n"
        + render_growth(fits)
        + f"\n\n![stage time vs events, log-log]({image})\n"
        + (f"\n{notes.strip()}\n" if notes.strip() else "")
    )


# --- running stages -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prefect_server(home: Path, timeout: float = 240.0) -> Iterator[str]:
    """A real `prefect server start` on a free loopback port; yields its API URL."""
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited early; see {home / 'server.log'}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s at {url}")
            time.sleep(1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def child_env(root: Path, prefect_home: Path, api_url: str, listeners: int) -> dict[str, str]:
    """Environment of a stage subprocess: its data root, the shared server, the world size."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSFADE_")}
    env.update(
        {
            "CROSSFADE_DATA_ROOT": str(root),
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "OPENBLAS_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "TQDM_DISABLE": "1",
            "CROSSFADE_SEED": str(SEED),
        }
    )
    for key, value in world(listeners).items():
        env[f"CROSSFADE_SIMULATOR__{key.upper()}"] = str(value)
    return env


def child(stage: str, out: Path, profile_to: Path | None) -> None:
    """Inside the subprocess: import the stage's flow, run it once, write the timing."""
    import importlib
    import resource

    module, name = STAGES[stage]
    fn = getattr(importlib.import_module(module), name)
    before = resource.getrusage(resource.RUSAGE_SELF)
    import_rss = before.ru_maxrss / 1024
    start = time.perf_counter()
    if profile_to is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(fn)
        profiler.dump_stats(str(profile_to))
    else:
        fn()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    out.write_text(
        json.dumps({"seconds": seconds, "cpu_seconds": cpu, "import_rss_mb": import_rss})
    )


def lake_events(root: Path) -> int:
    """Events published in the lake under `root` (from the batch manifests)."""
    from crossfade.data import lake

    return sum(int(m["row_counts"].get("events", 0)) for m in lake.manifests(root / "lake"))


def run_stage(stage: str, env: dict[str, str], work: Path, profile: bool) -> dict[str, Any]:
    """One stage in a fresh interpreter; returns its flow and process time and peak RSS."""
    slug = stage.replace(" ", "_")
    out, log_path = work / f"{slug}.json", work / f"{slug}.log"
    args = [sys.executable, "-m", "benchmarks.lifecycle", "--child", stage, "--out", str(out)]
    if profile:
        args += ["--profile-to", str(work / f"{slug}.prof")]
    start = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError(f"stage {stage!r} exceeded {STAGE_TIMEOUT_S} s; log {log_path}")
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    process_seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"stage {stage!r} failed (exit {proc.returncode}):\n{tail}")
    timing = json.loads(out.read_text())
    return {
        "seconds": float(timing["seconds"]),
        "cpu_seconds": None if timing.get("cpu_seconds") is None else float(timing["cpu_seconds"]),
        "import_rss_mb": float(timing["import_rss_mb"]),
        "process_seconds": process_seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def stages_until(last: str | None) -> list[str]:
    """The data stages in lifecycle order up to and including `last` (all when None): a later
    stage reads what the earlier ones wrote, so only a prefix can run on its own."""
    order = list(STAGES)
    if last is None:
        return order
    if last not in STAGES:
        raise ValueError(f"unknown stage {last!r}; choose one of {', '.join(order)}")
    return order[: order.index(last) + 1]


def measure_size(
    listeners: int,
    api_url: str,
    prefect_home: Path,
    repeat: int,
    keep: Path | None,
    until: str | None = None,
) -> list[StageResult]:
    """The data stages (up to `until`), in lifecycle order, on one fresh world of `listeners`
    listeners."""
    tmp = Path(tempfile.mkdtemp(prefix=f"crossfade-lifecycle-{listeners}-"))
    results = []
    try:
        root = tmp / "data"
        env = child_env(root, prefect_home, api_url, listeners)
        events = 0
        for stage in stages_until(until):
            timing = run_stage(stage, env, tmp, profile=keep is not None)
            if stage == "ingest":
                events = lake_events(root)
            row = StageResult(
                listeners, world(listeners)["tracks"], stage, events, repeat=repeat, **timing
            )
            row.load = os.getloadavg()[0]
            results.append(row)
            print(
                f"{listeners:>7,} listeners {events:>11,} events  {stage:<10} "
                f"{row.seconds:8.1f} s flow {row.process_seconds:8.1f} s process "
                f"{row.peak_rss_mb:8,.0f} MB peak",
                flush=True,
            )
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for prof in tmp.glob("*.prof"):
                shutil.copy(prof, keep / f"{listeners}-{prof.name}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def load_saved(path: Path | None) -> list[StageResult]:
    """Results saved by earlier invocations (none when the file does not exist)."""
    if path is None or not path.is_file():
        return []
    return [StageResult(**row) for row in json.loads(path.read_text())["results"]]


def save(path: Path, results: Sequence[StageResult], load: tuple[float, ...]) -> None:
    """Write results (and the load average they were taken under) as JSON."""
    path.write_text(
        json.dumps({"load": list(load), "results": [asdict(r) for r in results]}, indent=1)
    )


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s.replace("_", "")) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes takes comma-separated listener counts such as 2500,5000, got {text!r}"
        ) from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"--sizes needs positive listener counts, got {text!r}")
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the ladder (or render saved results) and write the `lifecycle` section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, help="listener counts, e.g. 2500,5000,10000")
    parser.add_argument("--quick", action="store_true", help=f"small ladder {QUICK_SIZES}")
    parser.add_argument("--repeats", type=int, default=1, help="fresh worlds per size")
    parser.add_argument("--save", type=Path, help="accumulate results in this JSON file")
    parser.add_argument("--render", type=Path, help="only write the section from saved results")
    parser.add_argument("--profile-dir", type=Path, help="cProfile every stage, keep .prof here")
    parser.add_argument(
        "--until", choices=list(STAGES), help="stop after this stage (e.g. for the largest size)"
    )
    parser.add_argument(
        "--notes", type=Path, help="Markdown appended to the section (e.g. profiling findings)"
    )
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--child", choices=list(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.out, args.profile_to)
        return
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")

    load = os.getloadavg()
    if args.render:
        saved = json.loads(args.render.read_text())
        results, load = load_saved(args.render), tuple(saved.get("load", load))
    else:
        sizes = args.sizes or (list(QUICK_SIZES) if args.quick else list(DEFAULT_SIZES))
        results = [r for r in load_saved(args.save) if r.listeners not in sizes]
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; sizes {sizes}")
        with (
            tempfile.TemporaryDirectory(prefix="crossfade-prefect-bench-") as home,
            prefect_server(Path(home)) as api_url,
        ):
            for listeners in sizes:
                for repeat in range(args.repeats):
                    results += measure_size(
                        listeners, api_url, Path(home), repeat, args.profile_dir, args.until
                    )
                    if args.save:
                        save(args.save, results, load)
    rows = medians(results)
    print(render_table(rows))
    print(render_growth(growth(rows)))
    if args.no_doc:
        return
    from benchmarks.report import write_section

    plot(rows, PLOT)
    note = f"Sizes measured: {', '.join(f'{n:,}' for n in sorted({r.listeners for r in rows}))}."
    command = COMMAND + (" --quick" if args.quick else "")
    notes = args.notes.read_text() if args.notes else ""
    body = section(rows, (load[0], load[1], load[2]), note, notes=notes)
    write_section("lifecycle", body, command)


if __name__ == "__main__":
    main()
