"""The re-ranker: enabled rules in a fixed order, with a reason tag per moved item.

Order (`RULE_ORDER`): safety -> freshness -> MMR -> artist cap -> long-tail quota ->
fairness -> final safety check on the response. Safety runs first so no later rule can
promote an unsafe item, and again last as a guard. Each rule is a pure function on the
ordered candidate list; an item gets a rule's tag when that rule changed its top-k position
(positions at or below k count as one "out" position), and a removed item gets the safety tag.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

import pandas as pd

from crossfade import columns as C
from crossfade.reranking import artist_cap, fairness, freshness, long_tail, mmr
from crossfade.reranking.config import RerankingConfig
from crossfade.reranking.fairness import ExposureTracker
from crossfade.reranking.frame import artist_keys, prepare
from crossfade.reranking.safety import safety_filter

RULE_ORDER = (
    "safety",
    "freshness",
    "mmr",
    "artist_cap",
    "long_tail",
    "fairness",
    "final_safety",
)


@dataclass(frozen=True)
class RequestContext:
    """Who asks and when: the listener's country and age bucket, and the request time."""

    country: str
    age_bucket: str | None
    now: date | datetime


@dataclass(frozen=True)
class RerankResult:
    """Top-k item ids in final order; reason tags per moved item; removed item -> tag."""

    item_ids: list[str]
    reasons: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)

    def tag_counts(self) -> Counter[str]:
        """How many items each rule moved or removed (for per-rule monitoring)."""
        counts: Counter[str] = Counter(t for tags in self.reasons.values() for t in tags)
        counts.update(self.removed.values())
        return counts


def _positions(frame: pd.DataFrame, k: int) -> dict[str, int]:
    """Item -> top-k position, with everything at or below k clipped to k."""
    return {item: min(i, k) for i, item in enumerate(frame[C.ITEM_ID])}


class Reranker:
    """Applies the enabled rules of a `RerankingConfig`; holds the fairness exposure state.

    Every response is recorded in the tracker (so exposure is measurable with fairness off
    too); the fairness rule only reads it when enabled.
    """

    def __init__(
        self, config: RerankingConfig | None = None, tracker: ExposureTracker | None = None
    ) -> None:
        self.config = config or RerankingConfig()
        self.tracker = tracker or ExposureTracker(decay=self.config.fairness.decay)

    def rerank(self, candidates: pd.DataFrame, context: RequestContext, k: int) -> RerankResult:
        """Re-rank one request's scored candidates and return the top k with reasons."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        cfg = self.config
        work, removed = safety_filter(
            prepare(candidates),
            context.country,
            context.age_bucket,
            enforce_markets=cfg.safety.enforce_markets,
            block_explicit_for_adults=cfg.safety.block_explicit_for_adults,
        )
        reasons: dict[str, list[str]] = {}

        def step(tag: str, new: pd.DataFrame) -> pd.DataFrame:
            before, after = _positions(work, k), _positions(new, k)
            for item, pos in after.items():
                if before[item] != pos:
                    reasons.setdefault(item, []).append(tag)
            return new

        if cfg.freshness.enabled:
            f = cfg.freshness
            work = step(
                freshness.TAG,
                freshness.apply_freshness(
                    work,
                    context.now,
                    boost=f.boost,
                    half_life_days=f.half_life_days,
                    max_age_days=f.max_age_days,
                ),
            )
        if cfg.mmr.enabled:
            work = step(
                mmr.TAG,
                mmr.mmr_rerank(
                    work, lambda_=cfg.mmr.lambda_, genre_similarity=cfg.mmr.genre_similarity
                ),
            )
        cap = cfg.artist_cap.max_per_artist if cfg.artist_cap.enabled else None
        if cap is not None:
            work = step(artist_cap.TAG, artist_cap.apply_artist_cap(work, k, max_per_artist=cap))
        if cfg.long_tail.enabled:
            work = step(
                long_tail.TAG,
                long_tail.apply_long_tail_quota(
                    work,
                    k,
                    min_long_tail_share=cfg.long_tail.min_long_tail_share,
                    max_per_artist=cap,
                ),
            )
        if cfg.fairness.enabled:
            fc = cfg.fairness
            target = self.tracker.uniform_target() if fc.target_share is None else fc.target_share
            work = step(
                fairness.TAG,
                fairness.fairness_rerank(
                    work,
                    k,
                    shares=self.tracker.shares(),
                    target_share=target,
                    fairness_weight=fc.fairness_weight,
                ),
            )
        response, late = safety_filter(
            work.iloc[:k],
            context.country,
            context.age_bucket,
            enforce_markets=cfg.safety.enforce_markets,
            block_explicit_for_adults=cfg.safety.block_explicit_for_adults,
        )
        removed.update(late)
        self.tracker.record(artist_keys(response))
        item_ids = [str(i) for i in response[C.ITEM_ID]]
        out_reasons = {item: reasons.get(item, []) for item in item_ids}
        out_reasons.update({i: t for i, t in reasons.items() if i not in out_reasons})
        return RerankResult(item_ids=item_ids, reasons=out_reasons, removed=removed)
