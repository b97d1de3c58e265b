"""Evaluation protocols: temporal split (default) and per-user random ratio split."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from crossfade import columns as C


@dataclass
class Split:
    """Training events, held-out events, and the instant that separates them."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: datetime | None


def temporal_split(events: pd.DataFrame, holdout_days: int) -> Split:
    """Train on everything before the last `holdout_days` days, test on those days."""
    if events.empty:
        raise ValueError("cannot split an empty event log")
    end = events[C.TS].max()
    cutoff = (end.floor("D") - pd.Timedelta(days=holdout_days - 1)).to_pydatetime()
    before = events[C.TS] < cutoff
    if before.all() or not before.any():
        raise ValueError(f"a {holdout_days}-day holdout leaves nothing on one side of the split")
    return Split(events[before].copy(), events[~before].copy(), cutoff)


def ratio_split(events: pd.DataFrame, test_share: float, seed: int) -> Split:
    """Per listener, a random `test_share` of their interactions held out (comparable with
    published MovieLens numbers): floor(test_share * n) of a listener's n rows, chosen by
    one seeded uniform draw per row, so the same seed and rows give the same split."""
    rng = np.random.default_rng(seed)
    draw = rng.random(len(events))
    ranks = pd.Series(draw, index=events.index).groupby(events[C.USER_ID]).rank(pct=True)
    test = ranks <= test_share
    return Split(events[~test].copy(), events[test].copy(), None)


def positives(
    test: pd.DataFrame, train: pd.DataFrame, new_only: bool = True
) -> dict[str, set[str]]:
    """What each listener engaged with in the test period (played, not skipped), excluding
    items they had already played in training when `new_only` (those are not discoveries)."""
    liked = test[~test[C.SKIPPED]]
    pairs = liked[[C.USER_ID, C.ITEM_ID]].drop_duplicates()
    if new_only:
        seen = train[[C.USER_ID, C.ITEM_ID]].drop_duplicates().assign(_seen=True)
        pairs = pairs.merge(seen, how="left", on=[C.USER_ID, C.ITEM_ID])
        pairs = pairs[pairs["_seen"].isna()]
    return {str(u): set(g[C.ITEM_ID]) for u, g in pairs.groupby(C.USER_ID)}


def window_start(cutoff: datetime, days: int) -> datetime:
    """The instant `days` days before the cutoff."""
    return cutoff - timedelta(days=days)
