"""Amortized creator-exposure fairness across requests.

`ExposureTracker` keeps each artist's cumulative, decayed exposure, where position `rank`
(0-based) of a response is worth `1 / log2(rank + 2)`. `fairness_rerank` lowers over-exposed
artists within the top k by `fairness_weight * (exposure share - target share)`.

The rule reorders only inside the top k, starting from the incoming order's rank score
`(k - rank) / k`: the earlier rules (MMR, artist cap, long-tail quota) decide which items make
the cut and fairness never undoes them, it only moves attention between those items. Given the
same sequence of requests the tracker, and so the output, is the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.reranking.frame import artist_keys

TAG = "fairness"
_PRUNE_BELOW = 1e-12


def position_weight(rank: int) -> float:
    """Exposure of 0-based position `rank` (the DCG discount 1 / log2(rank + 2))."""
    return 1.0 / math.log2(rank + 2)


@dataclass
class ExposureTracker:
    """Per-artist cumulative exposure, decayed by `decay` per recorded response."""

    decay: float = 1.0
    exposure: dict[str, float] = field(default_factory=dict)
    requests: int = 0

    def record(self, artist_ids: Sequence[str]) -> None:
        """Decay the past, then add the position weights of one response's artists."""
        if self.decay < 1.0:
            self.exposure = {
                a: e * self.decay for a, e in self.exposure.items() if e * self.decay > _PRUNE_BELOW
            }
        for rank, artist in enumerate(artist_ids):
            self.exposure[artist] = self.exposure.get(artist, 0.0) + position_weight(rank)
        self.requests += 1

    def shares(self) -> dict[str, float]:
        """Each artist's share of all exposure so far (empty before the first response)."""
        total = sum(self.exposure.values())
        if total <= 0:
            return {}
        return {a: e / total for a, e in self.exposure.items()}

    def uniform_target(self) -> float:
        """The fair share if every artist seen so far were exposed equally (0 if none)."""
        return 1.0 / len(self.exposure) if self.exposure else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-data state, for persisting between processes."""
        return {
            "decay": self.decay,
            "requests": self.requests,
            "exposure": dict(sorted(self.exposure.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExposureTracker:
        """Restore a tracker saved by `to_dict`."""
        return cls(
            decay=float(data["decay"]),
            exposure={str(a): float(e) for a, e in dict(data["exposure"]).items()},
            requests=int(data["requests"]),
        )


def gini(values: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal exposure, ->1 = one artist has all)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or x.sum() <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * x).sum()) / (n * x.sum()) - (n + 1) / n)


def fairness_rerank(
    frame: pd.DataFrame,
    k: int,
    *,
    shares: Mapping[str, float],
    target_share: float,
    fairness_weight: float,
) -> pd.DataFrame:
    """Reorder the top k by rank score minus the over-exposure penalty; the rest unchanged."""
    top_n = min(k, len(frame))
    if top_n <= 1 or fairness_weight == 0 or not shares:
        return frame.reset_index(drop=True)
    top = frame.iloc[:top_n].copy()
    artists = artist_keys(top)
    base = (top_n - np.arange(top_n)) / top_n
    over = np.array([max(0.0, shares.get(a, 0.0) - target_share) for a in artists])
    top["_fair"] = base - fairness_weight * over
    top = top.sort_values(["_fair", C.ITEM_ID], ascending=[False, True], kind="mergesort").drop(
        columns="_fair"
    )
    return pd.concat([top, frame.iloc[top_n:]]).reset_index(drop=True)
