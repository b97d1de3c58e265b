"""Accuracy by slice of listeners (tier, country, age bucket, platform, activity level) with
percentile-bootstrap confidence intervals, so a report can say whether a model serves light
listeners or one market worse, and whether the gap is larger than the noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.evaluation.metrics import (
    ACCURACY_METRICS,
    Recommendations,
    Relevant,
    accuracy_by_user,
)

ACTIVITY_LEVEL = "activity_level"

# columns of the `by_slice` table
SLICE = "slice"  # the slicing column, e.g. "tier"
VALUE = "value"  # the slice value, e.g. "premium"
METRIC = "metric"
MEAN = "mean"
LOW = "ci_low"
HIGH = "ci_high"
N_USERS = "n_users"

_MAX_CELLS = 4_000_000  # bootstrap index cells drawn at once (memory bound)


def per_user_metrics(recommendations: Recommendations, relevant: Relevant, k: int) -> pd.DataFrame:
    """One row per listener with relevant items (`C.USER_ID`, precision, recall, ndcg, map,
    hit at k); listeners with an empty relevant set are skipped, as in the overall averages."""
    return accuracy_by_user(recommendations, relevant, k)


def activity_level(
    events: pd.DataFrame,
    bins: Sequence[float] = (0, 10, 50, np.inf),
    labels: Sequence[str] = ("light", "medium", "heavy"),
) -> pd.DataFrame:
    """Listener activity slice from their number of plays: plays in (bins[i], bins[i+1]] get
    labels[i] (defaults: 1-10 light, 11-50 medium, 51+ heavy). Returns `C.USER_ID` and
    `ACTIVITY_LEVEL`, ready to merge into a users frame."""
    if len(labels) != len(bins) - 1:
        raise ValueError("need exactly one label per bin")
    plays = events.groupby(C.USER_ID).size()
    level = pd.cut(plays, bins=list(bins), labels=list(labels), include_lowest=True)
    return pd.DataFrame({C.USER_ID: plays.index, ACTIVITY_LEVEL: level.to_numpy()})


def bootstrap_means(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, ci: float
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the column means of `values` [n, m]: draw an index matrix
    [n_boot, n] of listeners with replacement, take each resample's means, and return the
    (1 - ci)/2 and (1 + ci)/2 quantiles per column. One listener gives a degenerate CI."""
    n = values.shape[0]
    per_chunk = max(1, _MAX_CELLS // max(n, 1))
    means = []
    for start in range(0, n_boot, per_chunk):
        idx = rng.integers(0, n, size=(min(per_chunk, n_boot - start), n))
        # one metric at a time keeps memory at the size of the index matrix
        means.append(np.stack([values[:, j][idx].mean(axis=1) for j in range(values.shape[1])], 1))
    boot = np.concatenate(means)
    tail = (1 - ci) / 2
    return np.quantile(boot, tail, axis=0), np.quantile(boot, 1 - tail, axis=0)


def by_slice(
    per_user: pd.DataFrame,
    users: pd.DataFrame,
    slice_columns: list[str],
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Mean of each metric per slice value, with a percentile bootstrap CI (listeners resampled
    within the slice) and the slice size. Each slicing column is taken on its own (cross two
    by making a combined column in `users`); listeners missing from `users` fall in a NaN
    slice rather than disappearing. Long format: SLICE, VALUE, METRIC, MEAN, LOW, HIGH,
    N_USERS. Deterministic for a given seed."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    metrics = [m for m in ACCURACY_METRICS if m in per_user.columns] or [
        c for c in per_user.columns if c != C.USER_ID
    ]
    joined = per_user.merge(
        users[[C.USER_ID, *slice_columns]].drop_duplicates(C.USER_ID), how="left", on=C.USER_ID
    )
    rows: list[dict[str, object]] = []
    for c_pos, column in enumerate(slice_columns):
        groups = joined.groupby(column, dropna=False, observed=True, sort=True)
        for g_pos, (value, group) in enumerate(groups):
            values = group[metrics].to_numpy(dtype=float)
            rng = np.random.default_rng([seed, c_pos, g_pos])
            low, high = bootstrap_means(values, n_boot, rng, ci)
            mean = values.mean(axis=0)
            for j, metric in enumerate(metrics):
                rows.append(
                    {
                        SLICE: column,
                        VALUE: value,
                        METRIC: metric,
                        MEAN: float(mean[j]),
                        LOW: float(low[j]),
                        HIGH: float(high[j]),
                        N_USERS: len(group),
                    }
                )
    return pd.DataFrame(rows, columns=[SLICE, VALUE, METRIC, MEAN, LOW, HIGH, N_USERS])
