"""Merge candidate sources with quotas, de-duplicate, and filter what must never be shown.

Every candidate keeps the source that found it first (in priority order), its score there,
and every other source that also found it. Filters, applied to every source alike:
- heard in the last `exclude_heard_days` days (no point recommending yesterday's plays);
- not playable in the listener's market;
- explicit content for minors (13-17, and unknown ages: the safe default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from crossfade.data import domains as D

SOURCES: tuple[str, ...] = (
    "collaborative",
    "content",
    "cold_start",
    "popular_in_market",
    "fresh_releases",
    "episodes",
)


@dataclass(slots=True)
class Candidate:
    """One retrieved item: where it came from and how strongly.

    `row` is the item's row in the candidate model's catalogue (its popularity tables, the
    serving catalogue's order), so later stages index arrays instead of looking the id up
    again; -1 when not known (a candidate built by hand).
    """

    item_id: str
    source: str
    score: float
    sources: list[str] = field(default_factory=list)
    row: int = -1


@dataclass(frozen=True)
class Listener:
    """What retrieval needs to know about the listener of a request."""

    user_id: str
    country: str = D.UNKNOWN_COUNTRY
    age_bucket: str = D.UNKNOWN
    tier: str = "ad_supported"

    @property
    def is_minor(self) -> bool:
        """Minors and unknown ages never get explicit content."""
        return self.age_bucket in D.MINOR_AGE_BUCKETS


Ranked = tuple[Sequence[str], np.ndarray]
RRF_K = 60  # the usual reciprocal-rank-fusion constant: damps the weight of the very top


def merge_sources(
    ranked: dict[str, Ranked],
    quotas: dict[str, int],
    total: int,
    admit: Callable[[Sequence[str]], np.ndarray],
) -> list[Candidate]:
    """Filter each source, take its quota, de-duplicate, then order by reciprocal-rank fusion.

    `admit(ids)` gives each id's catalogue row when the item may be shown to this listener
    and -1 when a filter refuses it (one lookup per id serves the filter and the row).

    An item's fused score is the sum over the sources that found it of 1 / (RRF_K + rank), so
    items several sources agree on come first and cutting the list at `total` keeps them;
    each candidate still reports the first source (in priority order) and its own score.
    """
    seen: dict[str, Candidate] = {}
    fused: dict[str, float] = {}
    per_source: dict[str, list[Candidate]] = {}
    for source in SOURCES:
        if source not in ranked:
            continue
        ids, scores = ranked[source]
        if len(ids) == 0:
            continue
        admitted = admit(ids)
        quota = quotas.get(source, 0)
        taken: list[Candidate] = []
        rank = 0
        # plain Python values: iterating NumPy scalars costs more than the loop body
        for item, score, row in zip(
            ids, np.asarray(scores).tolist(), admitted.tolist(), strict=True
        ):
            if row < 0:
                continue
            fused[item] = fused.get(item, 0.0) + 1.0 / (RRF_K + rank)
            rank += 1
            known = seen.get(item)
            if known is not None:
                if source not in known.sources:
                    known.sources.append(source)
                continue
            candidate = Candidate(str(item), source, float(score), [source], row)
            seen[item] = candidate
            taken.append(candidate)
            if len(taken) >= quota:
                break
        per_source[source] = taken
    chosen = [c for taken in per_source.values() for c in taken]
    chosen.sort(key=lambda c: (-fused[c.item_id], c.item_id))
    return chosen[:total]
