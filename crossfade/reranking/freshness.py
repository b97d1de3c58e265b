"""Freshness boost: recent releases get `boost * exp(-age_days / half_life_days)` added."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.reranking.frame import SCORE, order_by_score

TAG = "freshness_boost"


def freshness_bonus(
    release_dates: pd.Series,
    now: date | datetime,
    *,
    boost: float,
    half_life_days: float,
    max_age_days: int,
) -> np.ndarray:
    """The score bonus per item: exponential decay with age, 0 past `max_age_days`.

    Ages are whole UTC days, clipped at 0 (a release dated today or later gets the full boost);
    a missing release date gets no bonus.
    """
    today = pd.Timestamp(now.date() if isinstance(now, datetime) else now)
    released = pd.to_datetime(release_dates, errors="coerce")
    if getattr(released.dt, "tz", None) is not None:
        released = released.dt.tz_convert("UTC").dt.tz_localize(None)
    age = (today - released.dt.normalize()).dt.days.to_numpy(dtype=float)
    age = np.clip(age, 0, None)
    bonus = boost * np.exp(-age / half_life_days)
    eligible = ~np.isnan(age) & (age <= max_age_days)
    return np.where(eligible, bonus, 0.0)


def apply_freshness(
    frame: pd.DataFrame,
    now: date | datetime,
    *,
    boost: float,
    half_life_days: float,
    max_age_days: int,
) -> pd.DataFrame:
    """Add the freshness bonus to `score` and re-sort by (-score, item_id) (no-op if no bonus)."""
    out = frame.copy()
    if out.empty:
        return out
    bonus = freshness_bonus(
        out[C.RELEASE_DATE],
        now,
        boost=boost,
        half_life_days=half_life_days,
        max_age_days=max_age_days,
    )
    if not bonus.any():
        return out  # nothing recent: leave the incoming order alone
    out[SCORE] = out[SCORE] + bonus
    return order_by_score(out)
