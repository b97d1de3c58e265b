"""Per-account behaviour features that separate stream farms from people.

Every feature is computed from the observable listening log alone (never from simulator
truth): how many plays end just past the 30-second stream threshold, how evenly the account
plays around the clock, how narrow its catalogue is, how often it plays the same track at the
same moment as the same other account (lockstep), and how rarely it saves, adds or follows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.data import domains as D

NEAR_THRESHOLD_MS = 6_000  # "just over 30 s": plays in [threshold, threshold + this)
LOCKSTEP_SECONDS = 60  # two accounts playing one track this close together are in lockstep
LOCKSTEP_NEIGHBOURS = 8  # rows on each side inspected (members of one ring interleave)

FEATURES: tuple[str, ...] = (
    "plays",
    "near_threshold_share",
    "hour_entropy",
    "item_entropy",
    "distinct_item_share",
    "lockstep_share",
    "engagement_share",
    "skip_share",
)
REQUIRED = (C.USER_ID, C.ITEM_ID, C.TS, C.MS_PLAYED)


def _entropy_rows(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each row of a count matrix."""
    totals = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    return np.asarray(-(p * logs).sum(axis=1))


def _lockstep(users: np.ndarray, items: np.ndarray, ts_s: np.ndarray, n_users: int) -> np.ndarray:
    """Per account: the share of its plays made in lockstep with its most frequent partner
    (same item, another account, within LOCKSTEP_SECONDS). Ring members share one partner
    set play after play; two people who like the same hit meet by chance, rarely twice."""
    order = np.lexsort((ts_s, items))
    u, it, t = users[order], items[order], ts_s[order]
    pairs: list[np.ndarray] = []
    for k in range(1, LOCKSTEP_NEIGHBOURS + 1):
        if k >= len(order):
            break
        same = (it[k:] == it[:-k]) & (u[k:] != u[:-k]) & (t[k:] - t[:-k] <= LOCKSTEP_SECONDS)
        a, b = u[:-k][same], u[k:][same]
        pairs.append(np.stack([np.concatenate([a, b]), np.concatenate([b, a])], axis=1))
    out = np.zeros(n_users)
    if not pairs:
        return out
    both = np.concatenate(pairs)
    if len(both) == 0:
        return out
    keys, counts = np.unique(both, axis=0, return_counts=True)
    np.maximum.at(out, keys[:, 0], counts.astype(float))
    return out


def account_features(events: pd.DataFrame) -> pd.DataFrame:
    """One row per account (index: user id) with the columns of FEATURES.

    `events` needs user id, item id, ts and ms_played; saved / added_to_playlist /
    followed_artist / skipped are used when present. Shares are in [0, 1], entropies are
    normalised to [0, 1] (hours by log2 24, items by log2 of the play count).
    """
    missing = [c for c in REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(
            f"bot features need the events columns {list(REQUIRED)}; missing {missing}"
        )
    if events.empty:
        return pd.DataFrame(columns=list(FEATURES), index=pd.Index([], name=C.USER_ID))
    user_codes, user_ids = pd.factorize(events[C.USER_ID], sort=True)
    item_codes, _ = pd.factorize(events[C.ITEM_ID])
    ts = pd.to_datetime(events[C.TS], utc=True)
    ts_s = ts.to_numpy(dtype="datetime64[s]").astype(np.int64)
    hours = ts.dt.hour.to_numpy()
    n_users = len(user_ids)
    plays = np.bincount(user_codes, minlength=n_users).astype(float)

    ms = events[C.MS_PLAYED].to_numpy()
    near = (ms >= D.STREAM_THRESHOLD_MS) & (ms < D.STREAM_THRESHOLD_MS + NEAR_THRESHOLD_MS)
    near_share = np.bincount(user_codes, weights=near, minlength=n_users) / plays

    hour_counts = np.zeros((n_users, 24))
    np.add.at(hour_counts, (user_codes, hours), 1.0)
    hour_entropy = _entropy_rows(hour_counts) / np.log2(24)

    pairs = pd.DataFrame({"u": user_codes, "i": item_codes})
    per_pair = pairs.value_counts().reset_index(name="n")
    p = per_pair["n"].to_numpy() / plays[per_pair["u"].to_numpy()]
    h = np.bincount(per_pair["u"], weights=-p * np.log2(p), minlength=n_users)
    item_entropy = np.divide(h, np.log2(plays), out=np.zeros(n_users), where=plays > 1)
    distinct = np.bincount(per_pair["u"], minlength=n_users) / plays

    lock_share = np.minimum(_lockstep(user_codes, item_codes, ts_s, n_users) / plays, 1.0)

    engaged = np.zeros(len(events), dtype=bool)
    for col in (C.SAVED, C.ADDED_TO_PLAYLIST, C.FOLLOWED_ARTIST):
        if col in events.columns:
            engaged |= events[col].fillna(False).to_numpy(dtype=bool)
    engagement = np.bincount(user_codes, weights=engaged, minlength=n_users) / plays
    skipped = (
        events[C.SKIPPED].fillna(False).to_numpy(dtype=bool)
        if C.SKIPPED in events.columns
        else np.zeros(len(events), dtype=bool)
    )
    skip_share = np.bincount(user_codes, weights=skipped, minlength=n_users) / plays

    return pd.DataFrame(
        {
            "plays": plays,
            "near_threshold_share": near_share,
            "hour_entropy": hour_entropy,
            "item_entropy": item_entropy,
            "distinct_item_share": distinct,
            "lockstep_share": lock_share,
            "engagement_share": engagement,
            "skip_share": skip_share,
        },
        index=pd.Index(np.asarray(user_ids, dtype=object), name=C.USER_ID),
    )
