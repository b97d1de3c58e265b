"""Long-tail quota: at least `min_long_tail_share` of the top k from the long tail.

Long tail is the offline metric's definition (`crossfade.evaluation.metrics`): outside the
short head of most played items that together take `HEAD_SHARE` of all plays. Each candidate
carries its `play_share_above` (share of plays taken by items played more, from
`metrics.play_share_above`); a missing value counts as long tail, as an unknown item does in
`metrics.long_tail_share`. When short, the best long-tail items below the cut replace the
lowest-ranked head items, which move just below the top k; the newcomers close the top k in
their own order.
Given an artist cap, a swap never pushes an artist over it (the cap is the harder
constraint); a long-tail item that would is skipped.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from crossfade.evaluation.metrics import HEAD_SHARE, in_short_head
from crossfade.reranking.frame import PLAY_SHARE_ABOVE, artist_keys

TAG = "long_tail_quota"


def is_long_tail(frame: pd.DataFrame, head_share: float = HEAD_SHARE) -> np.ndarray:
    """Boolean mask of long-tail rows (the metric's definition, via `in_short_head`)."""
    share = pd.to_numeric(frame[PLAY_SHARE_ABOVE], errors="coerce").to_numpy(dtype=float)
    return ~in_short_head(share, head_share)


def required_long_tail(k: int, n: int, share: float) -> int:
    """How many long-tail items the top min(k, n) needs."""
    return math.ceil(share * min(k, n) - 1e-9)


def apply_long_tail_quota(
    frame: pd.DataFrame,
    k: int,
    *,
    min_long_tail_share: float,
    max_per_artist: int | None = None,
) -> pd.DataFrame:
    """Swap long-tail items into the top k until the quota holds (or none fit)."""
    n = len(frame)
    top_n = min(k, n)
    tail = is_long_tail(frame)
    needed = required_long_tail(k, n, min_long_tail_share)
    have = int(tail[:top_n].sum())
    if have >= needed or top_n == n:
        return frame.reset_index(drop=True)
    artists = artist_keys(frame)
    top = list(range(top_n))
    counts: dict[str, int] = {}
    for pos in top:
        counts[artists[pos]] = counts.get(artists[pos], 0) + 1
    used: set[int] = set()
    displaced: list[int] = []
    for cand in (p for p in range(top_n, n) if tail[p]):
        if have >= needed:
            break
        slot = _slot_for(cand, top, tail, artists, counts, max_per_artist)
        if slot is None:
            continue
        head = top[slot]
        counts[artists[head]] -= 1
        counts[artists[cand]] = counts.get(artists[cand], 0) + 1
        top[slot] = cand
        used.add(cand)
        displaced.append(head)
        have += 1
    below = [p for p in range(top_n, n) if p not in used]
    # Kept and swapped-in items keep their relative order: the newcomers end the top k.
    return frame.iloc[sorted(top) + sorted(displaced) + below].reset_index(drop=True)


def _slot_for(
    cand: int,
    top: list[int],
    tail: np.ndarray,
    artists: list[str],
    counts: dict[str, int],
    cap: int | None,
) -> int | None:
    """The lowest-ranked head slot `cand` may take without breaking the cap, or None."""
    fits = cap is None or counts.get(artists[cand], 0) + 1 <= cap
    for slot in range(len(top) - 1, -1, -1):
        head = top[slot]
        if tail[head]:
            continue
        if fits or artists[head] == artists[cand]:
            return slot
    return None
