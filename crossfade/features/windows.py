"""Rolling-window sums over daily counts, for point-in-time feature snapshots.

A snapshot taken at the start of day `s` only sees days before `s`, so a feature row stamped
at `s 00:00 UTC` never contains what happened later: that is what keeps point-in-time joins
free of leakage.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd


def day_numbers(ts: pd.Series, first_day: date) -> np.ndarray:
    """Whole UTC days since `first_day` for each timestamp."""
    origin = pd.Timestamp(first_day, tz="UTC")
    return ((ts - origin) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64)


def snapshot_times(first_day: date, n_days: int) -> list[datetime]:
    """Snapshot times: the start of each day after the first, through the day after the last."""
    return [
        datetime.combine(first_day + timedelta(days=k), datetime.min.time(), UTC)
        for k in range(1, n_days + 1)
    ]


def daily_counts(
    codes: np.ndarray,
    days: np.ndarray,
    n_entities: int,
    n_days: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Dense [entity, day] sums of `weights` (or counts) from per-event entity codes and days."""
    out = np.zeros((n_entities, n_days), dtype=np.float64)
    keep = (days >= 0) & (days < n_days)
    np.add.at(out, (codes[keep], days[keep]), 1.0 if weights is None else weights[keep])
    return out


def daily_counts_by(
    codes: np.ndarray,
    days: np.ndarray,
    groups: np.ndarray,
    n_entities: int,
    n_days: int,
    n_groups: int,
) -> np.ndarray:
    """Dense [entity, day, group] counts (e.g. plays per listener, day and genre)."""
    out = np.zeros((n_entities, n_days, n_groups), dtype=np.float32)
    keep = (days >= 0) & (days < n_days) & (groups >= 0)
    np.add.at(out, (codes[keep], days[keep], groups[keep]), 1.0)
    return out


def window_sums(daily: np.ndarray, window: int) -> np.ndarray:
    """Sum of the `window` days before each snapshot; snapshot k (1..D) sees days [k-window, k).

    Input [entity, day, ...]; output [entity, snapshot, ...] with D snapshots.
    """
    zeros = np.zeros((daily.shape[0], 1, *daily.shape[2:]), dtype=daily.dtype)
    cum = np.concatenate([zeros, np.cumsum(daily, axis=1)], axis=1)  # cum[:, k] = sum of days < k
    n_days = daily.shape[1]
    ends = np.arange(1, n_days + 1)
    starts = np.maximum(ends - window, 0)
    return cum[:, ends] - cum[:, starts]


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (no activity, no rate)."""
    out = np.zeros_like(numerator, dtype=np.float32)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def shares(counts: np.ndarray) -> np.ndarray:
    """Normalise the last axis to shares summing to 1 (all zeros stay zeros)."""
    total = counts.sum(axis=-1, keepdims=True)
    return safe_ratio(counts, np.broadcast_to(total, counts.shape))
