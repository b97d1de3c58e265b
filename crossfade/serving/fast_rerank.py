"""The re-ranker's rules on NumPy arrays: the request-path twin of `crossfade.reranking`.

`reranking.Reranker.rerank` is the definition (a DataFrame per rule, ~10 ms a request).
`FastReranker` applies the same enabled rules of the same `RerankingConfig`, in the same
order (`reranking.pipeline.RULE_ORDER`), to a permutation of array indices, and records
exposure in the same `ExposureTracker`, so it returns the same `RerankResult`: the same top
k, the same reason tags per moved item, the same removed items. Where a rule has a pure
helper (`relevance`, `in_short_head`, `required_long_tail`, `is_minor`, `available_in`) it
is called, not re-derived. `tests/unit/test_serving_fast_path.py` checks the equality on
generated inputs, request after request (the fairness state carries over).

Ties: every sort is by (-score, item_id), as `reranking.frame.order_by_score`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.evaluation.metrics import in_short_head
from crossfade.reranking import artist_cap, fairness, freshness, long_tail, mmr
from crossfade.reranking.frame import PLAY_SHARE_ABOVE, SCORE, artist_keys, prepare
from crossfade.reranking.pipeline import RequestContext, Reranker, RerankResult
from crossfade.reranking.safety import EXPLICIT_TAG, MARKET_TAG, available_in, is_minor

_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class RerankInput:
    """One request's ranked candidates, column-wise (best first, as the ranker left them)."""

    item_ids: list[str]
    scores: np.ndarray  # float64
    artist_keys: list[str]  # `reranking.frame.artist_keys`: missing artist = own key
    artist_codes: np.ndarray  # int64, equal code = same artist, -1 = missing
    genre_codes: np.ndarray  # int64, equal code = same genre, -1 = missing
    explicit: np.ndarray  # bool, a missing flag counts as explicit
    play_share_above: np.ndarray  # float64, NaN = missing (long tail)
    release_day: np.ndarray  # float64 UTC days since the epoch, NaN = missing
    available: np.ndarray  # bool: may be shown in the request's market (`available_in`)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        sizes = {
            "scores": len(self.scores),
            "artist_keys": len(self.artist_keys),
            "artist_codes": len(self.artist_codes),
            "genre_codes": len(self.genre_codes),
            "explicit": len(self.explicit),
            "play_share_above": len(self.play_share_above),
            "release_day": len(self.release_day),
            "available": len(self.available),
        }
        wrong = {k: v for k, v in sizes.items() if v != n}
        if wrong:
            raise ValueError(f"re-rank input arrays must all have {n} rows (item_ids): {wrong}")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, country: str) -> RerankInput:
        """Arrays from a re-ranker frame (`reranking.frame.REQUIRED` columns) for `country`.

        Used to compare both implementations on the same input; the serving pipeline builds
        its arrays from the catalogue instead.
        """
        work = prepare(frame)
        explicit = work[C.EXPLICIT].map(lambda v: True if pd.isna(v) else bool(v))
        released = pd.to_datetime(work[C.RELEASE_DATE], errors="coerce")
        if getattr(released.dt, "tz", None) is not None:
            released = released.dt.tz_convert("UTC").dt.tz_localize(None)
        days = (released.dt.normalize() - pd.Timestamp(_EPOCH)).dt.days.to_numpy(dtype=float)
        artists, _ = pd.factorize(work[C.ARTIST_ID], use_na_sentinel=True)
        genres, _ = pd.factorize(work[C.GENRE], use_na_sentinel=True)
        return cls(
            item_ids=[str(i) for i in work[C.ITEM_ID]],
            scores=work[SCORE].to_numpy(dtype=np.float64),
            artist_keys=artist_keys(work),
            artist_codes=np.asarray(artists, dtype=np.int64),
            genre_codes=np.asarray(genres, dtype=np.int64),
            explicit=explicit.to_numpy(dtype=bool),
            play_share_above=pd.to_numeric(work[PLAY_SHARE_ABOVE], errors="coerce").to_numpy(
                dtype=float
            ),
            release_day=days,
            available=np.array(
                [available_in(m, country) for m in work[C.AVAILABLE_MARKETS]], dtype=bool
            ),
        )


def label_codes(values: object) -> np.ndarray:
    """`pd.factorize` codes without pandas: equal labels share a code, missing ones get -1."""
    seen: dict[object, int] = {}
    labels = list(values)  # type: ignore[call-overload]
    out = np.empty(len(labels), dtype=np.int64)
    for j, value in enumerate(labels):
        if value is None or (isinstance(value, float) and value != value):
            out[j] = -1
        else:
            out[j] = seen.setdefault(value, len(seen))
    return out


def _day(moment: date | datetime) -> int:
    """`freshness_bonus`'s "today": the date of `moment` (in its own zone) as an epoch day."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return (day - _EPOCH).days


class FastReranker:
    """A `Reranker`'s rules on arrays; shares its config and its exposure tracker.

    Not thread-safe, like `Reranker`: the tracker changes with every response, so callers
    serialize `rerank` calls (the serving pipeline holds a lock).
    """

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker

    def rerank(self, data: RerankInput, context: RequestContext, k: int) -> RerankResult:
        """Re-rank one request's scored candidates and return the top k with reasons."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        cfg = self.reranker.config
        tracker = self.reranker.tracker
        ids = data.item_ids
        keys = data.artist_keys
        score = np.array(data.scores, dtype=np.float64)  # freshness adds to a copy
        id_array = np.array(ids, dtype=str)

        # prepare: each item's first row
        if len(set(ids)) == len(ids):
            perm = np.arange(len(ids))
        else:
            seen: set[str] = set()
            first = []
            for i, item in enumerate(ids):
                if item not in seen:
                    seen.add(item)
                    first.append(i)
            perm = np.asarray(first, dtype=np.int64)

        block = is_minor(context.age_bucket) or cfg.safety.block_explicit_for_adults
        enforce = cfg.safety.enforce_markets

        def safe(order: np.ndarray, removed: dict[str, str]) -> np.ndarray:
            bad_explicit = data.explicit[order] & block
            bad_market = ~data.available[order] & enforce & ~bad_explicit
            for i in order[bad_explicit]:
                removed[ids[i]] = EXPLICIT_TAG
            for i in order[bad_market]:
                removed[ids[i]] = MARKET_TAG
            return order[~(bad_explicit | bad_market)]

        removed: dict[str, str] = {}
        perm = safe(perm, removed)
        reasons: dict[str, list[str]] = {}
        rank = np.empty(len(ids), dtype=np.int64)

        def step(tag: str, new: np.ndarray) -> np.ndarray:
            rank[perm] = np.minimum(np.arange(len(perm)), k)
            before = rank[new]
            changed = before != np.minimum(np.arange(len(new)), k)
            for i in new[changed]:
                reasons.setdefault(ids[i], []).append(tag)
            return new

        def by_score(order: np.ndarray) -> np.ndarray:
            return order[np.lexsort((id_array[order], -score[order]))]

        if cfg.freshness.enabled and len(perm):
            f = cfg.freshness
            age = np.clip(_day(context.now) - data.release_day[perm], 0, None)
            bonus = f.boost * np.exp(-age / f.half_life_days)
            bonus = np.where(~np.isnan(age) & (age <= f.max_age_days), bonus, 0.0)
            if bonus.any():
                score[perm] = score[perm] + bonus
                perm = step(freshness.TAG, by_score(perm))
        if cfg.mmr.enabled:
            perm = step(mmr.TAG, self._mmr(data, by_score(perm), score))
        cap = cfg.artist_cap.max_per_artist if cfg.artist_cap.enabled else None
        if cap is not None:
            perm = step(artist_cap.TAG, _artist_cap(perm, keys, k, cap))
        if cfg.long_tail.enabled:
            perm = step(
                long_tail.TAG,
                _long_tail(perm, data, k, cfg.long_tail.min_long_tail_share, cap),
            )
        if cfg.fairness.enabled:
            fc = cfg.fairness
            target = tracker.uniform_target() if fc.target_share is None else fc.target_share
            perm = step(
                fairness.TAG,
                _fairness(perm, keys, id_array, k, tracker.shares(), target, fc.fairness_weight),
            )
        response = safe(perm[:k], removed)
        tracker.record([keys[i] for i in response])
        item_ids = [ids[i] for i in response]
        out_reasons = {item: reasons.get(item, []) for item in item_ids}
        out_reasons.update({i: t for i, t in reasons.items() if i not in out_reasons})
        return RerankResult(item_ids=item_ids, reasons=out_reasons, removed=removed)

    def _mmr(self, data: RerankInput, order: np.ndarray, score: np.ndarray) -> np.ndarray:
        """`mmr.mmr_rerank` on an order already sorted by (-score, item_id)."""
        n = len(order)
        if n <= 1:
            return order
        lam = self.reranker.config.mmr.lambda_
        genre_similarity = self.reranker.config.mmr.genre_similarity
        rel = mmr.relevance(score[order])
        a = data.artist_codes[order]
        g = data.genre_codes[order]
        same_artist = (a[:, None] == a[None, :]) & (a[None, :] >= 0)
        same_genre = (g[:, None] == g[None, :]) & (g[None, :] >= 0)
        sim = np.where(same_artist, 1.0, np.where(same_genre, genre_similarity, 0.0))
        gain = lam * rel
        max_sim = np.zeros(n)
        remaining = np.ones(n, dtype=bool)
        picked = np.empty(n, dtype=np.int64)
        for step in range(n):
            value = np.where(remaining, gain - (1 - lam) * max_sim, -np.inf)
            i = int(np.argmax(value))
            picked[step] = i
            remaining[i] = False
            np.maximum(max_sim, sim[i], out=max_sim)
        return order[picked]


def _artist_cap(order: np.ndarray, keys: list[str], k: int, cap: int) -> np.ndarray:
    """`artist_cap.apply_artist_cap` on an index order."""
    artists = [keys[i] for i in order]
    counts: dict[str, int] = {}
    top: list[int] = []
    over: list[int] = []
    pos = 0
    while pos < len(artists) and len(top) < k:
        artist = artists[pos]
        if counts.get(artist, 0) < cap:
            counts[artist] = counts.get(artist, 0) + 1
            top.append(pos)
        else:
            over.append(pos)
        pos += 1
    fill = max(0, k - len(top))
    positions = top + over[:fill] + over[fill:] + list(range(pos, len(artists)))
    return order[np.asarray(positions, dtype=np.int64)]


def _long_tail(
    order: np.ndarray, data: RerankInput, k: int, share: float, cap: int | None
) -> np.ndarray:
    """`long_tail.apply_long_tail_quota` on an index order."""
    n = len(order)
    top_n = min(k, n)
    tail = ~in_short_head(data.play_share_above[order])
    needed = long_tail.required_long_tail(k, n, share)
    have = int(tail[:top_n].sum())
    if have >= needed or top_n == n:
        return order
    artists = [data.artist_keys[i] for i in order]
    top = list(range(top_n))
    counts: dict[str, int] = {}
    for pos in top:
        counts[artists[pos]] = counts.get(artists[pos], 0) + 1
    used: set[int] = set()
    displaced: list[int] = []
    for cand in (p for p in range(top_n, n) if tail[p]):
        if have >= needed:
            break
        fits = cap is None or counts.get(artists[cand], 0) + 1 <= cap
        slot = None
        for s in range(len(top) - 1, -1, -1):
            head = top[s]
            if tail[head]:
                continue
            if fits or artists[head] == artists[cand]:
                slot = s
                break
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
    positions = sorted(top) + sorted(displaced) + below
    return order[np.asarray(positions, dtype=np.int64)]


def _fairness(
    order: np.ndarray,
    keys: list[str],
    id_array: np.ndarray,
    k: int,
    shares: dict[str, float],
    target: float,
    weight: float,
) -> np.ndarray:
    """`fairness.fairness_rerank` on an index order."""
    top_n = min(k, len(order))
    if top_n <= 1 or weight == 0 or not shares:
        return order
    top = order[:top_n]
    base = (top_n - np.arange(top_n)) / top_n
    over = np.array([max(0.0, shares.get(keys[i], 0.0) - target) for i in top])
    fair = base - weight * over
    return np.concatenate([top[np.lexsort((id_array[top], -fair))], order[top_n:]])
