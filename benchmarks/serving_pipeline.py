"""The recommender's request path in-process: pandas, NumPy, and NumPy with compiled trees.

One default simulated world (1,000 listeners, 4,000 tracks, 14 days, seed 42) with its
candidate model and a LambdaRank ranker of 300 rounds per tier (the flow's upper bound; early
stopping usually keeps fewer), built by the serving tests' own `build_world`, the online
store an in-memory reader over the real feature tables. Three pipelines over the same models:
`RecommendationPipeline(fast=False)` (pandas: `ranking.features` assembly, DataFrame rules),
the NumPy one (`serving.fast_inputs` + `serving.fast_rerank`) scoring with LightGBM's
predict, and the NumPy one with the trees compiled to native code (`ranking.compiled`, what
a recommender process serves with by default). The same request
sequence (every listener in turn, k=10, home shelf) goes through each, after warm-up; a run
gives p50/p99 per path and the per-stage medians; the table shows the median over runs. The
answers of the three paths are compared on every request.

Run: `python -m benchmarks.serving_pipeline [--runs 5] [--requests 300]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from benchmarks.report import write_section
from crossfade.config import SimulatorSettings
from crossfade.ranking.compiled import CompiledForest, compile_booster, compile_ranker
from crossfade.serving.api import RecommendRequest
from crossfade.serving.pipeline import RecommendationPipeline, _Run
from tests.unit.test_serving_pipeline import Served, build_world, request

COMMAND = "python -m benchmarks.serving_pipeline"
SEED = 42
ROUNDS = 300
RUNS = 5
REQUESTS = 300
WARMUPS = 20


def requests(served: Served, count: int) -> list[RecommendRequest]:
    """Every listener in turn (the unknown ones included), k=10, home shelf."""
    users = sorted(served.frames["users"]["user_id"].astype(str).unique())
    return [request(users[i % len(users)], k=10) for i in range(count)]


def one_run(
    pipe: RecommendationPipeline, batch: list[RecommendRequest]
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-request milliseconds and the median of each stage over the batch."""
    for r in batch[:WARMUPS]:
        pipe.recommend(r)
    times = np.empty(len(batch))
    stages: dict[str, list[float]] = {}
    for n, r in enumerate(batch):
        start = time.perf_counter()
        out = pipe.recommend(r)
        times[n] = (time.perf_counter() - start) * 1000.0
        for stage, ms in out.stage_ms.items():
            stages.setdefault(stage, []).append(ms)
    return times, {s: statistics.median(v) for s, v in stages.items()}


def check_same(
    served: Served, batch: list[RecommendRequest], compiled: dict[str, CompiledForest]
) -> int:
    """Requests whose answers differ between the three paths (must be 0)."""
    paths = (served.pipeline(), served.pipeline(fast=False), served.pipeline(compiled=compiled))
    differ = 0
    for r in batch:
        a, b, c = (p.recommend(r) for p in paths)
        differ += not ((a.items, a.fallbacks) == (b.items, b.fallbacks) == (c.items, c.fallbacks))
    return differ


def predict_ms(
    served: Served, batch: list[RecommendRequest], trees: int | None, cache: Path
) -> tuple[float, float]:
    """Median time per request of the tree scoring alone (one booster, first `trees` trees):
    LightGBM's predict, and the same trees compiled (ranking.compiled)."""
    pipe = served.pipeline()
    booster = next(iter(served.ranker.boosters.values()))
    forest = compile_booster(booster, cache, trees)
    times, native = [], []
    for r in batch[:100]:
        found = pipe.models.candidates.generate(r.listener_id, now=served.now)
        vector = pipe._user(r.listener_id, served.now, _Run(time.perf_counter, pipe.budgets_ms))
        features = pipe.features
        assert features is not None
        items = features.items([c.item_id for c in found], served.now)
        matrix = pipe.inputs.matrix(r.listener_id, found, vector, items, r.context)
        start = time.perf_counter()
        booster.predict(matrix, num_iteration=trees, num_threads=1)
        times.append((time.perf_counter() - start) * 1000.0)
        start = time.perf_counter()
        forest.predict(matrix)
        native.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), statistics.median(native)


def main() -> None:
    """Build the world, time both paths, write the `serving_pipeline` section."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        world = SimulatorSettings.model_validate({})
        served = build_world(Path(tmp), world, SEED, rounds=ROUNDS)
    cache = Path(tempfile.mkdtemp(prefix="crossfade-compiled-"))
    started = time.perf_counter()
    compiled = compile_ranker(served.ranker, cache)
    compile_s = time.perf_counter() - started
    batch = requests(served, args.requests)
    differ = check_same(served, batch, compiled)
    results: dict[str, list[tuple[float, float, dict[str, float]]]] = {
        "pandas": [],
        "numpy": [],
        "compiled": [],
    }
    paths: dict[str, dict[str, Any]] = {
        "pandas": {"fast": False},
        "numpy": {},
        "compiled": {"compiled": compiled},
    }
    sizes = []
    for _ in range(args.runs):
        for name, overrides in paths.items():
            pipe = served.pipeline(**overrides)
            times, stages = one_run(pipe, batch)
            results[name].append((float(np.median(times)), float(np.quantile(times, 0.99)), stages))
        sizes.append(len(pipe.models.candidates.generate(batch[0].listener_id, now=served.now)))
    summary = {}
    for name, runs in results.items():
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        stage_names = runs[0][2]
        stages = {s: statistics.median(r[2][s] for r in runs) for s in stage_names}
        summary[name] = (p50, p99, stages)
        print(name, f"p50 {p50:.2f} ms  p99 {p99:.2f} ms", stages)
    old, new, native = summary["pandas"], summary["numpy"], summary["compiled"]
    trees = sorted({b.num_trees() for b in served.ranker.boosters.values()})
    full = predict_ms(served, batch, None, cache)
    hundred = predict_ms(served, batch, 100, cache)
    tree_counts = "/".join(map(str, trees))
    stage_rows = "\n".join(
        f"| {s} | {old[2][s]:.2f} | {new[2][s]:.2f} | {native[2][s]:.2f} "
        f"| {old[2][s] / max(new[2][s], 1e-9):.0f}x | {new[2][s] / max(native[2][s], 1e-9):.1f}x |"
        for s in old[2]
    )
    body = f"""
Default world (1,000 listeners, 4,000 tracks, 14 days, seed {SEED}); about {sizes[0]}
candidates per request, k=10, home shelf; ranker boosters of {tree_counts} trees.
{args.requests} requests per path and run (every listener in turn, after {WARMUPS} warm-up
requests), one
thread, in-process (no HTTP); median of {args.runs} runs. All three paths answer every
request identically ({differ} requests with any difference out of {len(batch)}). Load average
when the benchmark started: {load:.2f}.

| path | p50 ms | p99 ms |
|---|---|---|
| pandas (`fast=False`, the reference) | {old[0]:.2f} | {old[1]:.2f} |
| NumPy (`serving.fast_inputs`, `fast_rerank`), LightGBM | {new[0]:.2f} | {new[1]:.2f} |
| NumPy, trees compiled (`ranking.compiled`, default) | {native[0]:.2f} | {native[1]:.2f} |
| ratio pandas / NumPy | {old[0] / new[0]:.1f}x | {old[1] / new[1]:.1f}x |
| ratio NumPy / compiled | {new[0] / native[0]:.1f}x | {new[1] / native[1]:.1f}x |

Median per stage (ms):

| stage | pandas | NumPy | compiled | pandas / NumPy | NumPy / compiled |
|---|---|---|---|---|---|
{stage_rows}

Tree scoring alone on one request's matrix (one booster): LightGBM `Booster.predict`
{full[0]:.2f} ms with all {trees[-1]} trees and {hundred[0]:.2f} ms with the first 100;
compiled (lleaves) {full[1]:.2f} ms and {hundred[1]:.2f} ms ({full[0] / full[1]:.1f}x and
{hundred[0] / hundred[1]:.1f}x). Compiling both tiers' boosters took {compile_s:.1f} s (once
per model and machine; a serving process loads the cached object in milliseconds).
"""
    write_section("serving_pipeline", body, COMMAND)
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
