"""ANN retrieval: recall@100 and single-thread queries/s of exact NumPy, Annoy and voyager.

Catalogues of 10k and 100k items with 64-d float32 vectors that are real ALS output: a
synthetic play matrix (genres of Dirichlet-weighted size, Zipf popularity inside each genre,
listeners who like 1-3 genres with a lognormal number of plays, 10% exploration plays that
follow global popularity, every item played at least once) is fitted with implicit ALS using
crossfade's default `ALSSettings` (regularization, iterations, alpha) but 64 factors, and
confidence 1 + alpha * log1p(plays), as `crossfade.candidates.als.fit_als` does. Item norms
then grow with popularity and span about three orders of magnitude, the regime that makes
inner-product search hard. Queries are the ALS vectors of 1,000 random listeners.

All in one process, one thread (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS are
set to 1 before NumPy is imported, so the untimed ALS fit runs on one thread too). For each
size:

- exact: `ExactItemIndex.query` one query at a time (the serving path), top-100. Its results
  are the ground truth and its queries/s the baseline of every ratio;
- Annoy: `AnnoyItemIndex` (exact head + norm-ranged augmented shards, see
  crossfade/candidates/index_annoy.py) over a grid of n_trees x search_k;
- voyager: `VoyagerItemIndex` over a grid of M x ef_search;
- ablations that justify (or question) the design: one plain Annoy index over all items
  with the "dot" metric, and with norm augmentation under "euclidean" and "angular"; the
  sharded Annoy index without its exact head; the same norm-ordered blocks and stop rule
  with every block scanned exactly (no trees); voyager with items inserted in row order
  instead of descending norm.

Queries/s is 1,000 / the median wall time of 3 passes over the 1,000 queries; recall@100 is
|returned ∩ exact top-100| / 100 averaged over queries. Build time is one build; size on disk
is the library's files (.ann / .voy) and the whole saved folder (which also holds the float32
vectors used for exact re-scoring and the ids).

Run: `python -m benchmarks.ann [--queries 1000] [--repeats 3] [--sizes 10000 100000]`.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

COMMAND = "python -m benchmarks.ann"
SEED = 42
K = 100
SIZES = (10_000, 100_000)
USERS = {10_000: 20_000, 100_000: 60_000}  # listeners in the synthetic play matrix
PLAYS_PER_LISTENER = 40
DIM = 64
ANNOY_GRID = {"n_trees": (10, 25, 50, 100), "search_k": (-1, 500, 1000, 2000, 5000)}
VOYAGER_GRID = {"m": (8, 16, 32), "ef_search": (100, 200, 400)}
TARGET_RECALL, TARGET_SPEEDUP = 0.95, 5.0


# --- data -----------------------------------------------------------------------------------


def play_matrix(n_items: int, n_users: int, plays_per_user: int, seed: int) -> sp.csr_matrix:
    """A listener x item play-count matrix with genres, Zipf popularity and mixed tastes."""
    rng = np.random.default_rng(seed)
    n_genres = max(8, n_items // 1000)
    genre_weight = rng.dirichlet(np.full(n_genres, 2.0))
    genre = rng.choice(n_genres, size=n_items, p=genre_weight)
    popularity = (rng.permutation(n_items) + 1.0) ** -0.9
    n_tastes = rng.integers(1, 4, size=n_users)
    tastes = rng.choice(n_genres, size=(n_users, 3), p=genre_weight)
    mix = rng.dirichlet(np.ones(3), size=n_users) * (np.arange(3) < n_tastes[:, None])
    mix /= mix.sum(axis=1, keepdims=True)
    counts = np.maximum(5, rng.lognormal(np.log(plays_per_user), 0.8, size=n_users)).astype(int)
    user = np.repeat(np.arange(n_users), counts)
    slot = (rng.random(user.size)[:, None] > np.cumsum(mix, axis=1)[user]).sum(axis=1)
    play_genre = tastes[user, np.minimum(slot, 2)]
    item = np.empty(user.size, dtype=np.int64)
    for g in range(n_genres):
        members = np.flatnonzero(genre == g)
        plays = np.flatnonzero(play_genre == g)
        if plays.size == 0:
            continue
        if members.size == 0:
            item[plays] = rng.integers(0, n_items, plays.size)
            continue
        cdf = np.cumsum(popularity[members])
        picks = np.searchsorted(cdf / cdf[-1], rng.random(plays.size))
        item[plays] = members[np.minimum(picks, members.size - 1)]
    explore = rng.random(user.size) < 0.1
    cdf = np.cumsum(popularity)
    picks = np.searchsorted(cdf / cdf[-1], rng.random(int(explore.sum())))
    item[explore] = np.minimum(picks, n_items - 1)
    # every catalogue item has at least one play: the CF index only holds trained items
    user = np.concatenate([user, rng.integers(0, n_users, n_items)])
    item = np.concatenate([item, np.arange(n_items)])
    matrix = sp.csr_matrix(
        (np.ones(user.size, dtype=np.float32), (user, item)), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    return matrix


def als_vectors(n_items: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ALS item factors (n_items x 64) and the factors of `n_queries` random listeners."""
    from implicit.cpu.als import AlternatingLeastSquares

    from crossfade.config import ALSSettings

    settings = ALSSettings()  # the project's tuned ALS, at the 64 factors this benchmark uses
    plays = play_matrix(n_items, USERS[n_items], PLAYS_PER_LISTENER, seed)
    plays.data = 1.0 + settings.alpha * np.log1p(plays.data)
    model = AlternatingLeastSquares(
        factors=DIM,
        regularization=settings.regularization,
        iterations=settings.iterations,
        random_state=seed,
    )
    model.fit(plays, show_progress=False)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    users = np.asarray(model.user_factors, dtype=np.float32)
    pick = np.random.default_rng(seed + 1).choice(users.shape[0], n_queries, replace=False)
    return items, np.ascontiguousarray(users[pick])


# --- measurement ----------------------------------------------------------------------------


@dataclass
class Row:
    """One measured configuration."""

    size: int
    backend: str
    config: str
    recall: float
    qps: float
    build_s: float | None = None
    index_mb: float | None = None
    folder_mb: float | None = None
    note: str = ""


def timed_queries(
    search: Callable[[np.ndarray], Sequence[Any]], queries: np.ndarray, repeats: int
) -> tuple[float, list[Sequence[Any]]]:
    """Queries/s (median of `repeats` passes over all queries) and the last pass's results."""
    from benchmarks.report import median_time

    search(queries[0])  # warm-up (first-touch of mmapped files, caches)
    seconds, results = median_time(lambda: [search(q) for q in queries], repeats)
    return len(queries) / seconds, results


def reset_counters(index: Any) -> None:
    """Zero an Annoy index's search counters before a timed configuration."""
    index.searches = index.shard_searches = index.short_answers = 0


def counters(index: Any) -> str:
    """Shard searches per query and short answers (Annoy only), for the notes column."""
    if not getattr(index, "searches", 0):
        return ""
    per_query = index.shard_searches / index.searches
    return f"{per_query:.2f} shard searches/query, {index.short_answers} short answers"


def recall(results: Sequence[Sequence[Any]], truth: Sequence[set[Any]]) -> float:
    """Mean |result ∩ truth| / K."""
    return float(np.mean([len(set(r) & t) / K for r, t in zip(results, truth, strict=True)]))


def disk_mb(index: Any, suffixes: tuple[str, ...]) -> tuple[float, float]:
    """(library files MB, whole folder MB) of `index` saved into a throw-away folder."""
    with tempfile.TemporaryDirectory(prefix="crossfade-ann-") as tmp:
        folder = Path(tmp) / "index"
        index.save(folder)
        files = list(folder.iterdir())
        lib = sum(p.stat().st_size for p in files if p.suffix in suffixes)
        total = sum(p.stat().st_size for p in files)
    return lib / 2**20, total / 2**20


def measure_size(n_items: int, n_queries: int, repeats: int) -> list[Row]:
    """Every backend and ablation on one catalogue size."""
    from crossfade.candidates.index import build
    from crossfade.config import IndexSettings

    start = time.perf_counter()
    items, queries = als_vectors(n_items, n_queries, SEED)
    norms = np.linalg.norm(items, axis=1)
    print(
        f"{n_items:,} items: ALS vectors in {time.perf_counter() - start:.0f}s; item norm "
        f"p1/p50/p99/max = {np.percentile(norms, 1):.3f}/{np.median(norms):.3f}/"
        f"{np.percentile(norms, 99):.3f}/{norms.max():.3f}",
        flush=True,
    )
    ids = [f"track-{i}" for i in range(n_items)]
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        ratio = row.qps / rows[0].qps
        print(
            f"  {row.backend:8s} {row.config:42s} recall@100={row.recall:.3f} "
            f"qps={row.qps:7.0f} ({ratio:4.1f}x) {row.note}",
            flush=True,
        )

    # exact: ground truth and baseline
    t0 = time.perf_counter()
    exact = build(ids, items, IndexSettings(backend="exact"), SEED)
    build_s = time.perf_counter() - t0
    qps, results = timed_queries(lambda q: exact.query(q, K)[0], queries, repeats)
    truth = [set(r) for r in results]
    _, folder_mb = disk_mb(exact, ())
    add(Row(n_items, "exact", "one query at a time", 1.0, qps, build_s, None, folder_mb))
    t0 = time.perf_counter()
    exact.query_batch(queries, K)
    batch_qps = len(queries) / (time.perf_counter() - t0)
    add(
        Row(
            n_items,
            "exact",
            "query_batch (1,000 at once)",
            1.0,
            batch_qps,
            note="not a serving path",
        )
    )

    # annoy grid (search_k is a query-time knob: one build per n_trees)
    for n_trees in ANNOY_GRID["n_trees"]:
        t0 = time.perf_counter()
        index = build(ids, items, IndexSettings(backend="annoy", n_trees=n_trees), SEED)
        build_s = time.perf_counter() - t0
        lib_mb, folder_mb = disk_mb(index, (".ann",))
        for search_k in ANNOY_GRID["search_k"]:
            index.settings = index.settings.model_copy(update={"search_k": search_k})
            reset_counters(index)
            qps, results = timed_queries(lambda q, i=index: i.query(q, K)[0], queries, repeats)
            config = f"n_trees={n_trees} search_k={search_k}"
            add(
                Row(
                    n_items,
                    "annoy",
                    config,
                    recall(results, truth),
                    qps,
                    build_s,
                    lib_mb,
                    folder_mb,
                    counters(index),
                )
            )

    # voyager grid (ef_search is a query-time knob: one build per M)
    for m in VOYAGER_GRID["m"]:
        t0 = time.perf_counter()
        index = build(ids, items, IndexSettings(backend="voyager", m=m), SEED)
        build_s = time.perf_counter() - t0
        lib_mb, folder_mb = disk_mb(index, (".voy",))
        for ef in VOYAGER_GRID["ef_search"]:
            index.settings = index.settings.model_copy(update={"ef_search": ef})
            qps, results = timed_queries(lambda q, i=index: i.query(q, K)[0], queries, repeats)
            config = f"M={m} ef_construction=200 ef_search={ef}"
            add(
                Row(
                    n_items,
                    "voyager",
                    config,
                    recall(results, truth),
                    qps,
                    build_s,
                    lib_mb,
                    folder_mb,
                )
            )

    # the shipped defaults, as `build(ids, vectors, IndexSettings(backend=...), seed)` makes them
    for backend in ("annoy", "voyager"):
        t0 = time.perf_counter()
        index = build(ids, items, IndexSettings(backend=backend), SEED)
        build_s = time.perf_counter() - t0
        lib_mb, folder_mb = disk_mb(index, (".ann", ".voy"))
        if backend == "annoy":
            reset_counters(index)
        qps, results = timed_queries(lambda q, i=index: i.query(q, K)[0], queries, repeats)
        add(
            Row(
                n_items,
                backend,
                "DEFAULTS " + _describe(IndexSettings(backend=backend)),
                recall(results, truth),
                qps,
                build_s,
                lib_mb,
                folder_mb,
                counters(index),
            )
        )

    ablations(n_items, ids, items, queries, truth, repeats, add)
    return rows


def _describe(settings: Any) -> str:
    """The knobs of a backend's settings, in one short string."""
    if settings.backend == "annoy":
        return f"n_trees={settings.n_trees} search_k={settings.search_k}"
    return f"M={settings.m} ef_c={settings.ef_construction} ef_search={settings.ef_search}"


def ablations(
    n_items: int,
    ids: list[str],
    items: np.ndarray,
    queries: np.ndarray,
    truth: list[set[str]],
    repeats: int,
    add: Callable[[Row], None],
) -> None:
    """The simpler designs the backends replaced, measured the same way (added via `add`)."""
    import voyager
    from annoy import AnnoyIndex

    from crossfade.candidates.index import build
    from crossfade.config import IndexSettings

    n_trees, search_k = 50, 5000
    norms = np.linalg.norm(items.astype(np.float64), axis=1)
    top = norms.max()
    augmented = np.hstack([items, np.sqrt(np.maximum(top**2 - norms**2, 0.0))[:, None]])
    augmented = augmented.astype(np.float32)
    for metric in ("dot", "euclidean", "angular"):
        vectors = items if metric == "dot" else augmented
        forest = AnnoyIndex(vectors.shape[1], metric)  # type: ignore[arg-type]
        forest.set_seed(SEED)
        for i, v in enumerate(vectors):
            forest.add_item(i, v)
        t0 = time.perf_counter()
        forest.build(n_trees, n_jobs=1)
        build_s = time.perf_counter() - t0

        def search(q: np.ndarray, f: Any = forest, m: str = metric) -> list[str]:
            if m == "dot":
                v = q
            else:  # augmented query, scaled onto the items' sphere (helps euclidean)
                qn = float(np.linalg.norm(q))
                v = np.append(q * (top / qn if qn > 0 else 1.0), 0.0).astype(np.float32)
            return [ids[r] for r in f.get_nns_by_vector(v, K, search_k=search_k)]

        qps, results = timed_queries(search, queries, repeats)
        label = "dot" if metric == "dot" else f"{metric} + norm augmentation"
        add(
            Row(
                n_items,
                "ablation",
                f"plain annoy {label} n_trees={n_trees} search_k={search_k}",
                recall(results, truth),
                qps,
                build_s,
            )
        )

    for sk in (1000, 5000):
        settings = IndexSettings(backend="annoy", n_trees=n_trees, search_k=sk)
        t0 = time.perf_counter()
        index = build(ids, items, settings, SEED, exact_head=0)
        build_s = time.perf_counter() - t0
        reset_counters(index)
        qps, results = timed_queries(lambda q, i=index: i.query(q, K)[0], queries, repeats)
        add(
            Row(
                n_items,
                "ablation",
                f"sharded annoy, no exact head, n_trees={n_trees} search_k={sk}",
                recall(results, truth),
                qps,
                build_s,
                note=counters(index),
            )
        )

    # the same norm-ordered blocks and Cauchy-Schwarz stop, every block scanned exactly
    from crossfade.candidates.index import select_top, sort_results
    from crossfade.candidates.index_annoy import EXACT_HEAD, shard_bounds

    order = np.argsort(-norms, kind="stable")
    head = min(EXACT_HEAD, n_items)
    blocks = [(0, head), *shard_bounds(n_items, head)] if head else shard_bounds(n_items, 0)
    block_data = [
        (order[a:b], np.ascontiguousarray(items[order[a:b]]), float(norms[order[a]]))
        for a, b in blocks
    ]
    scanned = {"calls": 0, "items": 0}

    def pruned_exact(q: np.ndarray) -> list[str]:
        qn = float(np.linalg.norm(q))
        rows_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        found = 0
        scanned["calls"] += 1
        for rows, matrix, max_norm in block_data:
            if found >= K:
                kth = np.partition(np.concatenate(score_parts), found - K)[found - K]
                if kth >= qn * max_norm * (1 + 1e-6):
                    break
            scores = matrix @ q
            top_positions = select_top(scores, min(K, rows.size))
            rows_parts.append(rows[top_positions])
            score_parts.append(scores[top_positions])
            found += top_positions.size
            scanned["items"] += rows.size
        best, _ = sort_results(np.concatenate(rows_parts), np.concatenate(score_parts), K)
        return [ids[r] for r in best]

    qps, results = timed_queries(pruned_exact, queries, repeats)
    add(
        Row(
            n_items,
            "ablation",
            "no trees: exact scan of the same norm-ordered blocks, same Cauchy-Schwarz stop",
            recall(results, truth),
            qps,
            note=f"{scanned['items'] / scanned['calls'] / n_items:.0%} of the items scanned/query",
        )
    )

    graph = voyager.Index(
        voyager.Space.InnerProduct,
        num_dimensions=items.shape[1],
        M=16,
        ef_construction=200,
        random_seed=SEED,
        max_elements=n_items,
    )
    t0 = time.perf_counter()
    graph.add_items(items.copy(), ids=list(range(n_items)), num_threads=1)
    build_s = time.perf_counter() - t0
    for ef in (200, 400):

        def vsearch(q: np.ndarray, e: int = ef) -> list[str]:
            rows, _ = graph.query(q, k=K, num_threads=1, query_ef=e)
            return [ids[r] for r in rows]

        qps, results = timed_queries(vsearch, queries, repeats)
        add(
            Row(
                n_items,
                "ablation",
                f"voyager, row-order insertion, M=16 ef_search={ef}",
                recall(results, truth),
                qps,
                build_s,
            )
        )


# --- report ---------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    """Markdown table: one line per configuration, ratios against exact of the same size."""
    lines = [
        "| items | backend | configuration | recall@100 | queries/s | vs exact "
        "| build s | index MB | folder MB | notes |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    baseline = {r.size: r.qps for r in rows if r.backend == "exact" and r.config.startswith("one")}

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    for r in rows:
        lines.append(
            f"| {r.size:,} | {r.backend} | {r.config} | {r.recall:.3f} | {r.qps:,.0f} "
            f"| {r.qps / baseline[r.size]:.1f}x | {num(r.build_s, '.1f')} "
            f"| {num(r.index_mb, '.1f')} | {num(r.folder_mb, '.1f')} | {r.note} |"
        )
    return "\n".join(lines)


def best(rows: list[Row], size: int, backend: str) -> Row | None:
    """Fastest grid configuration of `backend` reaching the recall target at `size`."""
    ok = [
        r
        for r in rows
        if r.size == size
        and r.backend == backend
        and r.recall >= TARGET_RECALL
        and not r.config.startswith("DEFAULTS")
    ]
    return max(ok, key=lambda r: r.qps, default=None)


def main(argv: list[str] | None = None) -> None:
    """Measure every size and rewrite the `ann` section of docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    rows: list[Row] = []
    for size in args.sizes:
        rows.extend(measure_size(size, args.queries, args.repeats))
    summary = []
    for size in args.sizes:
        exact = next(r for r in rows if r.size == size and r.backend == "exact")
        for backend in ("annoy", "voyager"):
            pick = best(rows, size, backend)
            if pick is None:
                summary.append(
                    f"- {size:,} items, {backend}: no configuration of the grid "
                    f"reached recall@100 >= {TARGET_RECALL}."
                )
                continue
            speed = pick.qps / exact.qps
            verdict = "meets" if speed >= TARGET_SPEEDUP else "misses"
            summary.append(
                f"- {size:,} items, {backend}: fastest grid configuration with recall@100 >= "
                f"{TARGET_RECALL} is `{pick.config}`: recall {pick.recall:.3f}, "
                f"{pick.qps:,.0f} q/s = {speed:.1f}x exact ({verdict} the {TARGET_SPEEDUP:.0f}x "
                "target)."
            )
    body = (
        f"{args.queries:,} queries (ALS vectors of random listeners), top-{K}, one thread, "
        f"64-d ALS item vectors (see `benchmarks/ann.py` for how they are made). Queries/s is "
        f"the median of {args.repeats} passes; 'vs exact' divides by exact search one query at "
        "a time in the same process. 'index MB' is the library's files (.ann/.voy); 'folder "
        "MB' is the whole saved index, including the float32 vectors used to re-score "
        "candidates exactly. Build is single-threaded (deterministic).\n\n"
        + "\n".join(summary)
        + "\n\n"
        + table(rows)
        + f"\n\nLoad average when the run started: {load:.2f}; the machine is shared, so "
        f"queries/s carry noise of roughly ±20% between runs (ratios within one run are more "
        f"stable). Whole run: {time.perf_counter() - started:.0f} s.\n"
    )
    print(body)
    if not args.no_write:
        from benchmarks.report import write_section

        write_section("ann", body, COMMAND)


if __name__ == "__main__":
    main()
