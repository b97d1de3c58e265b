"""Novelty check: does the effect fade (or grow) with days since first exposure?

A new ranker can win on curiosity alone. The effect is estimated separately for each day since
first exposure, and a weighted least-squares line through those effects (weights 1/se^2) tests
whether the slope differs from zero; a significant slope against the sign of the overall
effect is flagged as a novelty (or primacy) effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class NoveltyResult:
    """Effects by day since exposure and the trend test."""

    days: list[int]
    differences: list[float]
    ses: list[float]
    slope: float
    slope_se: float
    p_value: float
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def novelty_trend(
    days: Sequence[int],
    differences: Sequence[float],
    ses: Sequence[float],
    overall: float,
    alpha: float = 0.05,
) -> NoveltyResult:
    """Weighted slope of effect on day since exposure; flagged when it significantly opposes
    the overall effect (a fading gain or a recovering loss)."""
    x = np.asarray(days, dtype=np.float64)
    d = np.asarray(differences, dtype=np.float64)
    se = np.asarray(ses, dtype=np.float64)
    keep = np.isfinite(d) & (se > 0)
    x, d, se = x[keep], d[keep], se[keep]
    if len(x) < 3:
        return NoveltyResult(
            list(map(int, days)), list(differences), list(ses), 0.0, 0.0, 1.0, False
        )
    w = 1 / se**2
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    if sxx <= 0:
        return NoveltyResult(
            list(map(int, days)), list(differences), list(ses), 0.0, 0.0, 1.0, False
        )
    slope = float(np.sum(w * (x - xm) * d) / sxx)
    slope_se = float(np.sqrt(1 / sxx))
    p = float(2 * stats.norm.sf(abs(slope / slope_se)))
    flagged = bool(p < alpha and overall != 0 and np.sign(slope) != np.sign(overall))
    return NoveltyResult(
        [int(v) for v in days],
        [float(v) for v in differences],
        [float(v) for v in ses],
        slope,
        slope_se,
        p,
        flagged,
    )
