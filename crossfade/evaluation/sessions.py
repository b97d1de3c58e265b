"""Listening windows: runs of consecutive interactions of one user, in time order.

Items a listener plays (or a rater rates) within a few steps of each other share a context
the whole-history matrix does not show: the same sitting, the same mood, the same page of a
catalogue. Each window is a pseudo-user row over the items of `size` consecutive training
interactions of one user; windows start every `stride` interactions, and a final, shorter
window covers the tail, so every interaction is in at least one window. Models count
co-membership in these rows on top of the user rows (`collective.py`).

Only TRAINING interactions are used: a window never contains a held-out item, and the
timestamps of held-out interactions are never read. Without timestamps that order a
user's interactions (`has_sequences`), there are no windows and models behave as before.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crossfade import columns as C

# share of multi-interaction users whose timestamps must differ for the order to count as a
# sequence (a source that stamps every interaction of a user alike has no order to learn)
MIN_ORDERED_SHARE = 0.5


def _time_codes(values: pd.Series) -> np.ndarray:
    """Timestamps as sortable float64, NaN where unknown: datetimes (or text that parses as
    one) as integers of their unit, anything else as a number."""
    if not pd.api.types.is_numeric_dtype(values):
        moments = pd.to_datetime(values, utc=True, errors="coerce")
        if moments.notna().any() or pd.api.types.is_datetime64_any_dtype(values):
            codes = moments.astype("int64").to_numpy().astype(np.float64)
            return np.where(moments.isna().to_numpy(), np.nan, codes)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)


def _user_times(interactions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(user code, time code) of every row, both as arrays; time NaN where unknown."""
    _, users = np.unique(interactions[C.USER_ID].astype(str).to_numpy(), return_inverse=True)
    return users, _time_codes(interactions[C.TS])


def _ordered(users: np.ndarray, times: np.ndarray) -> bool:
    """Whether, among users with two or more timed rows, at least MIN_ORDERED_SHARE have
    rows at different times."""
    timed = pd.DataFrame({"user": users, "ts": times}).dropna()
    per_user = timed.groupby("user")["ts"].agg(["size", "nunique"])
    multi = per_user[per_user["size"] >= 2]
    return bool(len(multi)) and float((multi["nunique"] > 1).mean()) >= MIN_ORDERED_SHARE


def has_sequences(interactions: pd.DataFrame) -> bool:
    """Whether timestamps order the interactions within users: a `ts` column, and for at
    least MIN_ORDERED_SHARE of the users with two or more interactions, not all equal."""
    if C.TS not in interactions or interactions.empty:
        return False
    return _ordered(*_user_times(interactions))


def session_windows(
    interactions: pd.DataFrame,
    item_index: Mapping[str, int],
    size: int,
    stride: int,
) -> sp.csr_matrix:
    """[n_windows, len(item_index)] 0/1 rows, one per window of `size` consecutive
    interactions of a user (ordered by time, ties by item index), starting every `stride`
    interactions; empty (no rows) when the interactions carry no sequence. Rows without a
    known time are left out of every window (they still count as interactions)."""
    if size < 1 or not 1 <= stride <= size:
        raise ValueError(
            f"window size and stride must be >= 1 with stride <= size (windows must cover"
            f" every interaction), got size {size} and stride {stride}"
        )
    n_items = len(item_index)
    if C.TS not in interactions or interactions.empty:
        return sp.csr_matrix((0, n_items))
    users, times = _user_times(interactions)
    if not _ordered(users, times):
        return sp.csr_matrix((0, n_items))
    items = interactions[C.ITEM_ID].astype(str).map(item_index)
    if items.isna().any():
        raise ValueError("session windows need every item in the model's item index")
    known = ~np.isnan(times)
    # dense user codes over the timed rows only, so every code has at least one row
    _, users = np.unique(users[known], return_inverse=True)
    items_arr = items.to_numpy(dtype=np.int64)[known]
    # ties (ratings sent in one go share their second) are ordered by item index: the order
    # inside a tie is unknown, and a random order measured the same (docs/ranking.md)
    order = np.lexsort((items_arr, times[known], users))
    users, items_arr = users[order], items_arr[order]
    counts = np.bincount(users)
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(users)) - firsts[users]
    # windows start at 0, stride, ..., up to the first start whose window reaches the end
    last = -(-np.maximum(counts - size, 0) // stride)  # index of each user's last window
    offsets = np.concatenate([[0], np.cumsum(last + 1)[:-1]])
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for back in range(-(-size // stride)):
        window = position // stride - back
        inside = (window >= 0) & (window <= last[users]) & (position < window * stride + size)
        rows.append(offsets[users[inside]] + window[inside])
        cols.append(items_arr[inside])
    n_windows = int((last + 1).sum())
    out = sp.csr_matrix(
        (np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_windows, n_items),
    )
    out.data[:] = 1.0  # an item twice in a window (a repeat) still counts once
    return out
