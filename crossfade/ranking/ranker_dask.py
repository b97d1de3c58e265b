"""Per-tier LambdaRank trained on a Dask cluster with `lightgbm.dask.DaskLGBMRanker`.

The result is the same `RankerModel` as `ranker.fit_ranker` (one booster per tier, each with
its tier's `label_gain`), so scoring, saving and registration do not change.

- Query groups are never split: rows are sorted by group and cut into partitions at group
  boundaries, each partition with its own group sizes, so every worker holds whole requests.
- LightGBM's Dask interface has no early stopping (each worker sees only its own validation
  rows). The boosters train `num_boost_round` trees; the validation NDCG@k curve is then
  computed from per-tree contributions and the single-process early-stopping rule (best
  iteration, patience `early_stopping_rounds`) picks `best_iterations`, as `fit_ranker` does.
- Results are close to, not equal to, the single-process booster's: data-parallel training
  finds histogram bins from each worker's rows and bags rows per worker.
"""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

from crossfade.ranking.labels import LABEL, LabelPolicy
from crossfade.ranking.ranker import DEFAULT_PARAMS, RankerModel

# Set per worker by lightgbm.dask (its thread count), never by us.
_WORKER_OWNED = ("num_threads", "num_machines", "eval_at", "metric")


def group_partitions(frame: pd.DataFrame, group: str, n_partitions: int) -> list[pd.DataFrame]:
    """Rows sorted by `group` and cut into at most n contiguous parts of whole groups.

    Parts are balanced by rows; a part is never empty and a group never spans two parts.
    """
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be at least 1, got {n_partitions}")
    ordered = frame.sort_values(group, kind="stable")
    sizes = ordered.groupby(group, sort=False).size().to_numpy()
    if len(sizes) == 0:
        return []
    n_parts = min(n_partitions, len(sizes))
    ends = np.cumsum(sizes)
    # Group g goes to part floor(rows before it / rows per part): contiguous, balanced.
    part_of_group = np.minimum((ends - sizes) * n_parts // ends[-1], n_parts - 1)
    part_of_row = np.repeat(part_of_group, sizes)
    return [ordered[part_of_row == p] for p in np.unique(part_of_group)]


def _group_sizes(part: pd.DataFrame, group: str) -> pd.Series:
    return part.groupby(group, sort=False).size().reset_index(drop=True).astype(np.int64)


def _to_dask(
    parts: list[pd.DataFrame], features: list[str], group: str, client: Any
) -> tuple[dd.DataFrame, dd.Series, dd.Series]:
    """Scatter the parts to the workers; X (float32), labels and per-part group sizes."""
    pieces = []
    for part in parts:
        piece = part[features].astype(np.float32)
        piece[LABEL] = part[LABEL].to_numpy()
        piece[group] = part[group].to_numpy()
        pieces.append(piece)
    futures = client.scatter(pieces)
    frame = dd.from_delayed(futures, meta=pieces[0].iloc[:0], verify_meta=False)
    sizes = frame.map_partitions(_group_sizes, group, meta=pd.Series(dtype=np.int64))
    return frame[features], frame[LABEL], sizes


def ndcg_curve(
    booster: Any, frame: pd.DataFrame, features: list[str], group: str, gains: list[float], k: int
) -> np.ndarray:
    """LightGBM's NDCG@k (label gains, all-zero queries count 1) after each boosting round."""
    ordered = frame.sort_values(group, kind="stable")
    x = ordered[features].to_numpy(np.float32)
    labels = ordered[LABEL].to_numpy(np.int64)
    codes = pd.factorize(ordered[group])[0]
    n_trees = booster.current_iteration()
    scores = np.zeros(len(ordered), dtype=np.float64)
    gain = np.asarray(gains, dtype=np.float64)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts, stops = np.r_[0, bounds], np.r_[bounds, len(codes)]
    ideal = np.array(
        [(np.sort(gain[labels[a:b]])[::-1][:k] * discount[: min(k, b - a)]).sum()
         for a, b in zip(starts, stops, strict=True)]
    )  # fmt: skip
    curve = np.zeros(n_trees, dtype=np.float64)
    for tree in range(n_trees):
        scores += booster.predict(x, start_iteration=tree, num_iteration=1, raw_score=True)
        values = np.ones(len(starts))
        for q, (a, b) in enumerate(zip(starts, stops, strict=True)):
            if ideal[q] > 0:
                # Ties keep input order, as LightGBM's stable sort does.
                top = np.argsort(-scores[a:b], kind="stable")[:k]
                values[q] = (gain[labels[a:b][top]] * discount[: len(top)]).sum() / ideal[q]
        curve[tree] = values.mean()
    return curve


def early_stopping_iteration(curve: np.ndarray, rounds: int) -> int:
    """The 1-based best iteration LightGBM's early_stopping callback would keep."""
    best, best_at = -np.inf, 0
    for i, value in enumerate(curve):
        if value > best:
            best, best_at = value, i
        elif i - best_at >= rounds:
            break
    return best_at + 1


def fit_ranker_dask(
    client: Any,
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    features: list[str],
    group: str,
    tier_column: str,
    policy: LabelPolicy,
    params: dict[str, Any] | None = None,
    num_boost_round: int = 300,
    early_stopping_rounds: int = 30,
    partitions: int | None = None,
) -> RankerModel:
    """`fit_ranker` on a Dask cluster: one DaskLGBMRanker per tier, whole groups per partition.

    `client` is a `distributed.Client`; `partitions` defaults to one per worker.
    """
    from lightgbm.dask import DaskLGBMRanker

    missing = [c for c in [*features, group, tier_column, LABEL] if c not in train.columns]
    if missing:
        raise ValueError(f"ranker training frame lacks columns {missing}")
    n_parts = partitions or max(1, len(client.scheduler_info()["workers"]))
    config = {**DEFAULT_PARAMS, **(params or {})}
    k = int((config.get("eval_at") or [10])[0])
    config = {key: value for key, value in config.items() if key not in _WORKER_OWNED}
    boosters: dict[str, Any] = {}
    best: dict[str, int] = {}
    for tier, rows in train.groupby(tier_column):
        gains = policy.label_gain(str(tier))
        x, y, sizes = _to_dask(group_partitions(rows, group, n_parts), features, group, client)
        model = DaskLGBMRanker(
            client=client, n_estimators=num_boost_round, label_gain=gains, **config
        )
        with client.as_current():  # lightgbm.dask waits on the current client
            model.fit(x, y, group=sizes)
        booster = model.to_local().booster_
        n_trees = booster.current_iteration()
        tier_valid = valid[valid[tier_column] == tier] if valid is not None else None
        if tier_valid is not None and not tier_valid.empty:
            curve = ndcg_curve(booster, tier_valid, features, group, gains, k)
            best[str(tier)] = early_stopping_iteration(curve, early_stopping_rounds)
        else:
            best[str(tier)] = n_trees
        boosters[str(tier)] = booster
    if not boosters:
        raise ValueError(
            "no training rows: the ranker needs at least one tier with labelled requests"
        )
    return RankerModel(list(features), boosters, best)
