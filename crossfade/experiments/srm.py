"""Sample-ratio mismatch: are the observed group sizes compatible with the planned split?

A chi-square goodness-of-fit test; p < 0.001 flags a broken assignment or exposure log, and
a flagged experiment gets no decision until the cause is found (its effects are untrustworthy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """Observed and expected counts per variant, the chi-square statistic and its p-value."""

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    p_value: float
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def srm_check(
    counts: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square test of `counts` per variant against the planned `weights` (any scale)."""
    if set(counts) != set(weights):
        raise ValueError(
            f"SRM: variants in the data {sorted(counts)} differ from the plan {sorted(weights)}"
        )
    names = sorted(weights)
    observed = np.array([counts[n] for n in names], dtype=np.float64)
    if (observed < 0).any():
        raise ValueError(f"SRM: counts must be non-negative, got {dict(counts)}")
    w = np.array([weights[n] for n in names], dtype=np.float64)
    if (w <= 0).any():
        raise ValueError(f"SRM: planned weights must be positive, got {dict(weights)}")
    total = observed.sum()
    if total == 0:
        raise ValueError("SRM: no units in any variant")
    expected = total * w / w.sum()
    statistic, p = stats.chisquare(observed, expected)
    return SrmResult(
        {n: int(c) for n, c in zip(names, observed, strict=True)},
        {n: float(e) for n, e in zip(names, expected, strict=True)},
        float(statistic),
        float(p),
        bool(p < threshold),
    )
