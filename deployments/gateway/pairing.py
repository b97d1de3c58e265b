"""How far the shadow's answer is from the live answer to the same request.

Pure functions over two ranked lists (live first, shadow second). The guardrails read them:
a shadow that shares almost nothing with the live model, reorders the shared items wildly or
scores on another scale is a sanity breach before any listener sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import sqrt


@dataclass(frozen=True)
class PairOutcome:
    """One live/shadow pair: agreement measures, None where undefined (too few shared items)."""

    k: int
    overlap: float
    shared: int
    kendall_tau: float | None
    spearman_rho: float | None
    score_drift: float | None


def _check_ids(items: Sequence[str], name: str) -> None:
    if len(set(items)) != len(items):
        raise ValueError(f"{name} has duplicate item ids; a ranked list names each item once")


def overlap_at_k(live: Sequence[str], shadow: Sequence[str], k: int) -> float:
    """|top-k(live) ∩ top-k(shadow)| / k: 1.0 when the two top-k sets are the same."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return len(set(live[:k]) & set(shadow[:k])) / k


def _shared_ranks(live: Sequence[str], shadow: Sequence[str]) -> tuple[list[int], list[int]]:
    """Positions of the items both lists contain, in live order (live ranks are ascending)."""
    position = {item: rank for rank, item in enumerate(shadow)}
    live_ranks: list[int] = []
    shadow_ranks: list[int] = []
    for rank, item in enumerate(live):
        if item in position:
            live_ranks.append(rank)
            shadow_ranks.append(position[item])
    return live_ranks, shadow_ranks


def kendall_tau(live: Sequence[str], shadow: Sequence[str]) -> float | None:
    """Kendall's tau between the two orders of the shared items; None with fewer than two.

    Ranks are positions, so there are no ties and tau-a equals tau-b.
    """
    _, theirs = _shared_ranks(live, shadow)
    n = len(theirs)
    if n < 2:
        return None
    concordant = discordant = 0
    for i in range(n):
        for j in range(i + 1, n):
            if theirs[i] < theirs[j]:
                concordant += 1
            else:
                discordant += 1
    return (concordant - discordant) / (n * (n - 1) / 2)


def spearman_rho(live: Sequence[str], shadow: Sequence[str]) -> float | None:
    """Spearman's rho between the two orders of the shared items; None with fewer than two."""
    _, theirs = _shared_ranks(live, shadow)
    n = len(theirs)
    if n < 2:
        return None
    # Re-rank the shadow positions among the shared items (0..n-1); live order is 0..n-1.
    order = sorted(range(n), key=lambda i: theirs[i])
    dense = [0] * n
    for new_rank, i in enumerate(order):
        dense[i] = new_rank
    d2 = sum((i - dense[i]) ** 2 for i in range(n))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


def score_drift(
    live: Sequence[str],
    live_scores: Sequence[float],
    shadow: Sequence[str],
    shadow_scores: Sequence[float],
) -> float | None:
    """Root-mean-square score difference (shadow - live) over the shared items; None if none."""
    if len(live) != len(live_scores) or len(shadow) != len(shadow_scores):
        raise ValueError("each list needs exactly one score per item")
    shadow_score = dict(zip(shadow, shadow_scores, strict=True))
    diffs = [
        float(shadow_score[item]) - float(score)
        for item, score in zip(live, live_scores, strict=True)
        if item in shadow_score
    ]
    if not diffs:
        return None
    return sqrt(sum(d * d for d in diffs) / len(diffs))


def compare(
    live: Sequence[str],
    live_scores: Sequence[float],
    shadow: Sequence[str],
    shadow_scores: Sequence[float],
    k: int,
) -> PairOutcome:
    """All agreement measures of one pair, over each list's top k."""
    _check_ids(live, "live list")
    _check_ids(shadow, "shadow list")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    live_k, shadow_k = list(live[:k]), list(shadow[:k])
    live_s, shadow_s = list(live_scores[:k]), list(shadow_scores[:k])
    return PairOutcome(
        k=k,
        overlap=overlap_at_k(live_k, shadow_k, k),
        shared=len(set(live_k) & set(shadow_k)),
        kendall_tau=kendall_tau(live_k, shadow_k),
        spearman_rho=spearman_rho(live_k, shadow_k),
        score_drift=score_drift(live_k, live_s, shadow_k, shadow_s),
    )
