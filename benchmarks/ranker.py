"""Ranker quality on the default simulated world: per-tier NDCG@10 against ordering by
candidate score, and the re-ranker's accuracy/diversity trade-off on the same requests.

Runs the ranker flow's own steps (`flows/train_ranker.py`) without Prefect, on a fresh world
in a temporary data root: feature tables and `feast apply` (the features flow's tasks), the
impression log, the Feast point-in-time join of `ranker_features_v1`, the fit. Quality numbers
are deterministic for a seed; one run per seed. The join's time is reported apart, against the
impression log measured in the same process, since it is what the Feast retrieval adds.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


from benchmarks.report import write_section
from crossfade.config import load_settings
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.ranking.labels import load_label_policy
from flows import train_ranker as steps
from flows.features import apply_definitions, compute_tables, publish_tables

SEEDS = (42, 7)


def measure(seed: int) -> dict[str, float]:
    """One world, one ranker: NDCG@10 per tier for both orders, and the re-ranker effect."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings("local", data_root=Path(tmp), seed=seed)
        batch = simulate(settings.simulator, seed, settings.staging_dir, settings.truth_dir)
        lake.publish_batch(batch, settings.lake_dir)
        publish_tables.fn(settings, compute_tables.fn(settings))
        apply_definitions.fn(settings)
        start = time.perf_counter()
        raw, frames, cutoff, days = steps.log_impressions.fn(settings)
        logged = time.perf_counter()
        log = steps.join_store_features.fn(settings, raw)
        joined = time.perf_counter()
        train, valid, test = steps.temporal_split(log, cutoff, days)
        policy = load_label_policy(settings.config_path / "labels.yaml")
        model = steps.fit_ranker(
            train, valid, list(steps.FEATURES), steps.REQUEST, steps.TIER, policy
        )
        seconds = time.perf_counter() - start
        join_seconds, log_seconds = joined - logged, logged - start
        scores = model.predict(test, steps.TIER)
        ours = steps.ndcg10_by_tier(test, scores)
        base = steps.ndcg10_by_tier(test, test["source_score"].to_numpy())
        trade = steps.rerank_tradeoff(test, scores, frames).set_index("setting")
    out = {f"ranker {k}": v for k, v in ours.items()} | {f"base {k}": v for k, v in base.items()}
    off, on = trade.loc["ranker only"], trade.loc["ranker + re-ranker"]
    out |= {
        "rerank ndcg cost": float(off["ndcg"] - on["ndcg"]),
        "diversity off": float(off["diversity"]),
        "diversity on": float(on["diversity"]),
        "long tail off": float(off["long_tail_share"]),
        "long tail on": float(on["long_tail_share"]),
        "requests": float(log[steps.REQUEST].nunique()),
        "seconds": seconds,
        "join seconds": join_seconds,
        "log seconds": log_seconds,
    }
    return out


def main() -> None:
    """Measure each seed and write the `ranker` section of docs/benchmarks.md."""
    load = os.getloadavg()[0]
    rows = []
    for seed in SEEDS:
        m = measure(seed)
        rows.append(
            f"| {seed} | {m['ranker ndcg@10_premium']:.3f} ({m['base ndcg@10_premium']:.3f}) "
            f"| {m['ranker ndcg@10_ad_supported']:.3f} ({m['base ndcg@10_ad_supported']:.3f}) "
            f"| {m['ranker ndcg@10']:.3f} ({m['base ndcg@10']:.3f}) | {m['rerank ndcg cost']:.3f} "
            f"| {m['diversity off']:.3f} → {m['diversity on']:.3f} "
            f"| {m['long tail off']:.3f} → {m['long tail on']:.3f} | {m['requests']:.0f} "
            f"| {m['seconds']:.0f} | {m['join seconds']:.0f} "
            f"({m['join seconds'] / m['log seconds']:.2f}x log) |"
        )
        print(rows[-1])
    body = (
        "Default local world (1,000 listeners, 14 days). Ranker inputs: listener, item and "
        "request-context features from `ranker_features_v1` (Feast point-in-time join as of "
        "each request) plus candidate crosses (`crossfade/ranking/features.py`). NDCG@10 "
        "(graded, 2^label - 1) on the last day of logged impressions; in brackets: ordering by "
        "candidate score. Re-ranker columns: same requests, ranker order without → with "
        "`configs/reranking.yaml`. Long tail is one definition for the metric and the quota: "
        "outside the most played items making 20 % of plays (`metrics.HEAD_SHARE`); the quota "
        "asks for 90 % long tail in the top 10. *feature join s*: the Feast retrieval (two "
        "point-in-time joins, listener+context and item, for all rows at once), with its ratio "
        "to the impression log measured in the same process. The machine was shared with other "
        "jobs (load average {load}), so seconds are noisy.\n\n"
        "| seed | Premium | Ad-supported | all | re-rank NDCG cost | diversity | long-tail share "
        "| requests | log + join + fit s | feature join s |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    ).replace("{load}", f"{load:.1f}")
    write_section("ranker", body, "python -m benchmarks.ranker")


if __name__ == "__main__":
    main()
