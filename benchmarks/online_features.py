"""Online features: materialization throughput and serving latency, SQLite and Redis stores.

One process builds a simulated world (10k listeners, 14 days, default catalogue, window
ending yesterday so the features are fresh) in a throw-away data root, computes the three
feature tables, writes them and applies the Feast definitions, the same calls as
`flows/features.py` without Prefect (and without the feature-table validation, which is not
what is measured here). Then, for each online store (SQLite on the `local` profile, the
machine's Redis on `services` with a project of its own, torn down afterwards):

- materialization: `store.materialize_incremental(end_date=...)` timed per view. Feast writes
  only the latest snapshot per entity in the window (now - TTL .. end), so the rate counted is
  entity rows written per second; every entity key is read back to check the count;
- latency of one request = features of 1 listener + 500 candidate items (a fresh random
  sample per request, fixed seed, the same request sequence for both paths):
  a) plain Feast: `get_online_features` for all user features, then for all item features;
  b) crossfade's path: `OnlineFeatures.user()` + `OnlineFeatures.items()` (freshness check,
     minimization policy, item cache keyed by the materialization id);
  plain Feast on the same store, measured in the same process, is the baseline of the ratios;
- the one-off cost of filling the item cache: the first `.items()` after a materialization.

Timings are `time.perf_counter()` around each request, after warm-up requests.

Run: `python -m benchmarks.online_features [--users 10000] [--requests 200] [--plain 100]`.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COMMAND = "python -m benchmarks.online_features"
SEED = 42
USERS = 10_000
DAYS = 14
CANDIDATES = 500
REQUESTS = 200  # crossfade's path
PLAIN_REQUESTS = 100  # plain Feast (each request is much slower)
WARMUPS = 5
CACHE_FILLS = 3
TARGET_P99_MS = 10.0
TARGET_SPEEDUP = 10.0
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

Request = tuple[str, list[str]]


@dataclass
class ViewMaterialization:
    """One view's materialization: what was written and how long it took."""

    view: str
    entity_rows: int  # entities with a snapshot in the window: what Feast writes
    snapshot_rows: int  # offline rows inside the window (Feast keeps the latest per entity)
    read_back: int  # entity keys present in the online store afterwards
    seconds: float

    @property
    def rows_per_s(self) -> float:
        """Entity rows written per second."""
        return self.entity_rows / self.seconds if self.seconds else float("nan")


@dataclass
class Latency:
    """Per-request latencies of one path, in milliseconds."""

    path: str
    ms: np.ndarray
    full_gcs: int = 0  # generation-2 garbage collections during the timed requests

    @property
    def p50(self) -> float:
        """Median request latency (ms)."""
        return float(np.percentile(self.ms, 50))

    @property
    def p99(self) -> float:
        """99th percentile request latency (ms, linear interpolation)."""
        return float(np.percentile(self.ms, 99))

    @property
    def mean(self) -> float:
        """Mean request latency (ms)."""
        return float(self.ms.mean())


@dataclass
class StoreResult:
    """Everything measured on one online store."""

    name: str
    materialization: list[ViewMaterialization] = field(default_factory=list)
    plain: Latency | None = None
    crossfade: Latency | None = None
    cache_fills_ms: list[float] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


def redis_reachable(host: str = REDIS_HOST, port: int = REDIS_PORT) -> bool:
    """Whether a TCP connection to the Redis server can be opened (1 s timeout)."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def build_world(root: Path, users: int, days: int) -> dict[str, pd.DataFrame]:
    """Simulate and publish a world under `root`, then compute the three feature tables."""
    from crossfade.config import load_settings
    from crossfade.data.lake import publish_batch
    from crossfade.data.simulator import simulate
    from flows.features import compute_tables

    settings = load_settings(
        "local",
        data_root=root,
        simulator={"users": users, "days": days, "start_date": "auto"},
    )
    sim = settings.simulator
    start = time.perf_counter()
    batch = simulate(sim, settings.seed, settings.staging_dir, settings.truth_dir)
    manifest = publish_batch(batch, settings.lake_dir)
    print(
        f"world: {users:,} listeners, {days} days from {sim.start_date}, {sim.tracks:,} tracks + "
        f"{sim.episodes:,} episodes, {manifest['row_counts']['events']:,} events "
        f"({time.perf_counter() - start:.1f}s)",
        flush=True,
    )
    start = time.perf_counter()
    tables: dict[str, pd.DataFrame] = compute_tables.fn(settings)  # the flow's task, no Prefect
    sizes = ", ".join(f"{view} {len(frame):,}" for view, frame in tables.items())
    print(f"feature tables: {sizes} rows ({time.perf_counter() - start:.1f}s)", flush=True)
    return tables


def make_requests(
    user_ids: Sequence[str], item_ids: Sequence[str], n: int, seed: int = SEED
) -> list[Request]:
    """`n` requests: a random listener and a fresh random sample of candidate items each."""
    rng = np.random.default_rng(seed)
    users = np.asarray(user_ids, dtype=object)
    items = np.asarray(item_ids, dtype=object)
    size = min(CANDIDATES, len(items))
    return [
        (str(rng.choice(users)), [str(i) for i in rng.choice(items, size=size, replace=False)])
        for _ in range(n)
    ]


def time_requests(
    path: str, fn: Callable[[str, list[str]], Any], requests: list[Request], warmups: int
) -> Latency:
    """Call fn on the warm-up requests untimed, then time each remaining request."""
    for user, items in requests[:warmups]:
        fn(user, items)
    full_gcs = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal full_gcs
        full_gcs += phase == "start" and info.get("generation") == 2

    times = []
    gc.callbacks.append(count)
    try:
        for user, items in requests[warmups:]:
            start = time.perf_counter()
            fn(user, items)
            times.append((time.perf_counter() - start) * 1000.0)
    finally:
        gc.callbacks.remove(count)
    return Latency(path, np.array(times), full_gcs)


def materialize_views(settings: Any, store: Any, end: datetime) -> list[ViewMaterialization]:
    """Materialize each view on its own (timed) and count the entity rows Feast wrote."""
    from crossfade.features import catalog
    from feature_repo.definitions import TTL, feature_table_path
    from feature_repo.online_reader import FeastOnlineReader, write_marker

    keys = {catalog.USER_VIEW: "user_id", catalog.ITEM_VIEW: "item_id"}
    keys[catalog.ARTIST_VIEW] = "artist_id"
    out = []
    for view in (catalog.USER_VIEW, catalog.ITEM_VIEW, catalog.ARTIST_VIEW):
        table = pd.read_parquet(
            feature_table_path(settings.features_dir, view),
            columns=[keys[view], catalog.EVENT_TIMESTAMP],
        )
        window_start = datetime.now(UTC) - TTL  # what Feast uses on a first incremental run
        stamps = table[catalog.EVENT_TIMESTAMP]
        inside = table[(stamps >= window_start) & (stamps <= end)]
        start = time.perf_counter()
        store.materialize_incremental(end_date=end, feature_views=[view])
        seconds = time.perf_counter() - start
        out.append(
            ViewMaterialization(view, int(inside[keys[view]].nunique()), len(inside), 0, seconds)
        )
    write_marker(settings.features_dir, end, [m.view for m in out])
    reader = FeastOnlineReader(store, settings.features_dir)
    for m in out:
        first = catalog.view_features(m.view)[0].name
        everyone = reader.all_keys(m.view, keys[m.view])
        read = reader.read(m.view, keys[m.view], everyone, [first])
        m.read_back = sum(v is not None for v in read.values)
    return out


def bench_store(
    name: str,
    settings: Any,
    tables: dict[str, pd.DataFrame],
    requests: list[Request],
    n_ours: int,
    n_plain: int,
    warmups: int,
) -> StoreResult:
    """Write tables, apply, materialize and time both read paths on one store."""
    from crossfade import columns as C
    from crossfade.features import catalog
    from crossfade.features.online import OnlineFeatures
    from crossfade.features.policy import load_policy
    from feature_repo.online_reader import FeastOnlineReader, write_marker
    from feature_repo.store import open_store
    from flows.features import VIEWS, apply_definitions, publish_tables

    result = StoreResult(name)
    publish_tables.fn(settings, tables)
    apply_definitions.fn(settings)
    store = open_store(settings)
    end = max(frame[catalog.EVENT_TIMESTAMP].max() for frame in tables.values()).to_pydatetime()
    end = min(end, datetime.now(UTC))
    result.materialization = materialize_views(settings, store, end)
    for m in result.materialization:
        print(
            f"[{name}] materialized {m.view}: {m.entity_rows:,} entity rows "
            f"({m.snapshot_rows:,} snapshot rows in the window) in {m.seconds:.2f}s, "
            f"{m.rows_per_s:,.0f} rows/s; read back {m.read_back:,}",
            flush=True,
        )
        if m.read_back != m.entity_rows:
            result.notes.append(
                f"{m.view}: {m.entity_rows:,} entity rows expected in the window but "
                f"{m.read_back:,} keys found in the online store"
            )

    policy = load_policy(settings.config_path / settings.features.policy_file)
    online = OnlineFeatures(
        FeastOnlineReader(store, settings.features_dir), settings.features.freshness_hours, policy
    )

    def crossfade_path(user: str, items: list[str]) -> None:
        online.user(user)
        online.items(items)

    # The first .items() after a materialization fills the cache: timed apart, then again
    # after re-recording the materialization (a new id), so the cache is rebuilt each time.
    for k in range(CACHE_FILLS):
        if k:
            write_marker(settings.features_dir, end, list(VIEWS))
        loads = online.counters["item_cache_loads"]
        start = time.perf_counter()
        online.items(requests[k][1])
        result.cache_fills_ms.append((time.perf_counter() - start) * 1000.0)
        if online.counters["item_cache_loads"] != loads + 1:
            result.notes.append("a cache-fill call did not reload the item cache")
    loads = online.counters["item_cache_loads"]
    result.crossfade = time_requests(
        "crossfade", crossfade_path, requests[: warmups + n_ours], warmups
    )
    if online.counters["item_cache_loads"] != loads:
        result.notes.append("the item cache was reloaded during the timed requests")
    result.counters = {k: int(v) for k, v in online.counters.items()}

    user_refs = [f"{catalog.USER_VIEW}:{f.name}" for f in catalog.view_features(catalog.USER_VIEW)]
    item_refs = [f"{catalog.ITEM_VIEW}:{f.name}" for f in catalog.view_features(catalog.ITEM_VIEW)]

    def plain_feast(user: str, items: list[str]) -> None:
        store.get_online_features(features=user_refs, entity_rows=[{C.USER_ID: user}])
        store.get_online_features(features=item_refs, entity_rows=[{C.ITEM_ID: i} for i in items])

    result.plain = time_requests("plain Feast", plain_feast, requests[: warmups + n_plain], warmups)

    # Same truth on both paths: one listener's and one item's values must agree.
    user, items = requests[0]
    plain_user = store.get_online_features(
        features=user_refs, entity_rows=[{C.USER_ID: user}]
    ).to_dict()
    plain_items = store.get_online_features(
        features=item_refs, entity_rows=[{C.ITEM_ID: items[0]}]
    ).to_dict()
    ours_user = online.user(user).values
    ours_item = online.items(items[:1]).columns
    if plain_user["user_plays_28d"][0] != ours_user["user_plays_28d"]:
        result.notes.append(f"user_plays_28d of {user} differs between the two paths")
    if plain_items["item_plays_28d"][0] != int(ours_item["item_plays_28d"][0]):
        result.notes.append(f"item_plays_28d of {items[0]} differs between the two paths")
    return result


def run_store(
    name: str,
    profile: str,
    root: Path,
    tables: dict[str, pd.DataFrame],
    requests: list[Request],
    n_ours: int,
    n_plain: int,
    warmups: int,
) -> StoreResult:
    """Benchmark one profile's store in its own data root; Redis projects are torn down."""
    from crossfade.config import load_settings
    from feature_repo.store import open_store

    overrides: dict[str, Any] = {"data_root": root / name.lower()}
    project = None
    if profile == "services":
        if not redis_reachable():
            reason = f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable; store skipped"
            print(f"[{name}] {reason}", flush=True)
            return StoreResult(name, skipped=reason)
        project = f"bench_{uuid.uuid4().hex[:10]}"
        overrides["features"] = {"project": project}
    settings = load_settings(profile, **overrides)
    try:
        return bench_store(name, settings, tables, requests, n_ours, n_plain, warmups)
    finally:
        if project is not None:
            open_store(settings).teardown()
            left = leftover_redis_keys(project)
            print(f"[{name}] project {project} torn down; keys left: {left}", flush=True)


def leftover_redis_keys(project: str) -> int:
    """Keys of a Feast project still in Redis (Feast suffixes every key with the project)."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=1.0)
    try:
        return sum(1 for _ in client.scan_iter(match=f"*{project}".encode()))
    finally:
        client.close()


def store_section(r: StoreResult, warmups: int) -> str:
    """Markdown for one store: materialization, latency and cache fill tables."""
    if r.skipped:
        return f"### {r.name}\n\nSkipped: {r.skipped}.\n"
    assert r.plain is not None and r.crossfade is not None
    lines = [
        f"### {r.name}",
        "",
        "| view | entity rows materialized | snapshot rows in window | s | entity rows/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in r.materialization:
        lines.append(
            f"| {m.view} | {m.entity_rows:,} | {m.snapshot_rows:,} | {m.seconds:.2f} "
            f"| {m.rows_per_s:,.0f} |"
        )
    rows = sum(m.entity_rows for m in r.materialization)
    seconds = sum(m.seconds for m in r.materialization)
    lines.append(f"| **all three** | {rows:,} | | {seconds:.2f} | {rows / seconds:,.0f} |")
    lines += [
        "",
        "| path (1 listener + 500 items) | requests | p50 ms | p99 ms | mean ms | max ms "
        "| p50 vs plain | p99 vs plain | full GCs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = r.plain
    for lat in (r.plain, r.crossfade):
        lines.append(
            f"| {lat.path} | {len(lat.ms)} (+{warmups} warm-up) | {lat.p50:.2f} | {lat.p99:.2f} "
            f"| {lat.mean:.2f} | {lat.ms.max():.2f} | {base.p50 / lat.p50:.1f}x "
            f"| {base.p99 / lat.p99:.1f}x | {lat.full_gcs} |"
        )
    fills = ", ".join(f"{ms:.0f}" for ms in r.cache_fills_ms)
    lines += [
        "",
        f"Item cache fill (first `.items()` after a materialization, incl. that request): "
        f"median {statistics.median(r.cache_fills_ms):.0f} ms (runs: {fills} ms).",
    ]
    served = {k: v for k, v in sorted(r.counters.items()) if k != "item_cache_loads"}
    if any(served.values()):
        lines.append(f"Defaults served on crossfade's path: {served}.")
    for note in r.notes:
        lines.append(f"**Check failed:** {note}.")
    return "\n".join(lines) + "\n"


def verdict(results: list[StoreResult]) -> str:
    """One sentence per measured store on the latency targets."""
    out = []
    for r in results:
        if r.skipped or r.plain is None or r.crossfade is None:
            out.append(f"{r.name}: not measured ({r.skipped}).")
            continue
        speedup = r.plain.p99 / r.crossfade.p99
        median_speedup = r.plain.p50 / r.crossfade.p50
        fast = r.crossfade.p99 <= TARGET_P99_MS
        ahead = speedup >= TARGET_SPEEDUP
        out.append(
            f"{r.name}: crossfade's path p99 {r.crossfade.p99:.2f} ms "
            f"{'<=' if fast else '>'} {TARGET_P99_MS:.0f} ms and {speedup:.1f}x plain Feast's p99 "
            f"({'>=' if ahead else '<'} {TARGET_SPEEDUP:.0f}x; p50 {median_speedup:.1f}x): target "
            f"{'holds' if fast and ahead else 'NOT met'}."
        )
    return " ".join(out)


def report(
    results: list[StoreResult], args: argparse.Namespace, load: float, world: dict[str, int]
) -> str:
    """The markdown body of the `online_features` section."""
    from crossfade.features import catalog

    n_user = len(catalog.view_features(catalog.USER_VIEW))
    n_item = len(catalog.view_features(catalog.ITEM_VIEW))
    parts = [
        f"World: {args.users:,} listeners, {DAYS} days ending yesterday (UTC), default catalogue "
        f"(4,000 tracks + 300 episodes), seed {SEED}; feature tables: "
        + ", ".join(f"{view} {rows:,} rows" for view, rows in world.items())
        + ". Targets: crossfade's path p99 <= 10 ms for 1 listener + 500 items, and >= 10x "
        "faster than plain Feast on the same store.",
        "",
        f"**Verdict.** {verdict(results)}",
        "",
    ]
    parts += [store_section(r, args.warmups) for r in results]
    parts.append(
        "Materialization is `materialize_incremental(end_date=<latest snapshot>)` per view on a "
        "fresh store; Feast reads the snapshots of the window (now - 3-day TTL .. end) from "
        "the Parquet table and writes only the latest row per entity, so *entity rows* (the "
        "rows written, checked by reading every key back) is what the rate counts. The time "
        "is mostly Feast's Dask file offline store reading and sorting the whole Parquet "
        "table, all 14 days of snapshots (a profile showed it hashing the object-dtype "
        "list-valued columns; artist_stats has none), not the online write. Latency: "
        "one request is the features of 1 listener plus 500 candidate items, a fresh random "
        f"sample per request (seed {SEED}; both paths see the same requests). Plain Feast is "
        f"two `get_online_features` calls (all {n_user} listener features, then all {n_item} "
        "item features for the 500 items), without converting the response (`to_dict`), which "
        "favours Feast; it is the baseline of the ratios, measured in the same process on the "
        "same store. crossfade's path is `OnlineFeatures.user()` + `.items()` with the "
        "freshness check and the minimization policy, served from the item cache after the "
        "cache fill, which is reported apart. *Full GCs* counts the generation-2 garbage "
        "collections that started during a path's timed requests (`gc.callbacks`): plain "
        "Feast allocates enough protobuf objects per request to trigger one every few "
        "requests, and those requests make its tail, so its p99 is mostly garbage-collection "
        "pauses; the p50 ratio is the more conservative comparison. Each request is timed with "
        f"`time.perf_counter()` in one process after {args.warmups} warm-up requests; p99 over "
        f"{args.plain} plain-Feast requests is interpolated between the slowest two. Load "
        f"average when the benchmark started: {load:.2f} (the machine is shared, so timings "
        "are noisy)."
    )
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark on both stores and rewrite its section of docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--requests", type=int, default=REQUESTS, help="crossfade's path")
    parser.add_argument("--plain", type=int, default=PLAIN_REQUESTS, help="plain Feast")
    parser.add_argument("--warmups", type=int, default=WARMUPS)
    parser.add_argument("--no-write", action="store_true", help="print, don't touch the docs")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]

    from crossfade import columns as C
    from crossfade.features import catalog

    root = Path(tempfile.mkdtemp(prefix="crossfade-bench-online-"))
    try:
        tables = build_world(root / "world", args.users, DAYS)
        world = {view: len(frame) for view, frame in tables.items()}
        user_ids = tables[catalog.USER_VIEW][C.USER_ID].unique().tolist()
        item_ids = tables[catalog.ITEM_VIEW][C.ITEM_ID].unique().tolist()
        n = args.warmups + max(args.requests, args.plain)
        requests = make_requests(user_ids, item_ids, n)
        results = []
        for name, profile in (("SQLite", "local"), ("Redis", "services")):
            r = run_store(
                name, profile, root, tables, requests, args.requests, args.plain, args.warmups
            )
            results.append(r)
            if r.crossfade is not None and r.plain is not None:
                print(
                    f"[{name}] plain Feast p50 {r.plain.p50:.2f} ms p99 {r.plain.p99:.2f} ms; "
                    f"crossfade p50 {r.crossfade.p50:.2f} ms p99 {r.crossfade.p99:.2f} ms; "
                    f"cache fill {statistics.median(r.cache_fills_ms):.0f} ms",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    body = report(results, args, load, world)
    print(body)
    if not args.no_write:
        from benchmarks.report import write_section

        write_section("online_features", body, COMMAND)


if __name__ == "__main__":
    main()
