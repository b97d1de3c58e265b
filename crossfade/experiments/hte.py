"""Heterogeneous treatment effects: per-segment effects with Benjamini-Hochberg and a test of
interaction (Cochran's Q: do the segment effects differ more than chance allows?)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from crossfade.experiments.corrections import adjust
from crossfade.experiments.stats import Comparison


@dataclass(frozen=True)
class SegmentEffect:
    """The effect of one metric within one segment value, with its BH-adjusted p-value."""

    metric: str
    segment: str
    value: str
    n: int
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class Interaction:
    """Cochran's Q test of heterogeneity across a segment's values."""

    metric: str
    segment: str
    q: float
    dof: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def cochran_q(differences: Sequence[float], ses: Sequence[float]) -> tuple[float, int, float]:
    """Q = sum w (d - d_bar)^2 with w = 1/se^2; chi-square with k - 1 degrees of freedom."""
    d = np.asarray(differences, dtype=np.float64)
    se = np.asarray(ses, dtype=np.float64)
    keep = se > 0
    d, se = d[keep], se[keep]
    if len(d) < 2:
        return 0.0, 0, 1.0
    w = 1 / se**2
    pooled = float(np.sum(w * d) / np.sum(w))
    q = float(np.sum(w * (d - pooled) ** 2))
    dof = len(d) - 1
    return q, dof, float(stats.chi2.sf(q, dof))


def segment_effects(
    metric: str, segment: str, comparisons: dict[str, Comparison]
) -> tuple[list[SegmentEffect], Interaction]:
    """Per-value effects of one segment (BH over its values) and the interaction test."""
    names = sorted(comparisons)
    p = adjust([comparisons[n].p_value for n in names], "bh")
    effects = [
        SegmentEffect(
            metric,
            segment,
            name,
            comparisons[name].control.n + comparisons[name].treatment.n,
            comparisons[name].difference,
            comparisons[name].ci_low,
            comparisons[name].ci_high,
            comparisons[name].p_value,
            float(adj),
        )
        for name, adj in zip(names, p, strict=True)
    ]
    q, dof, pq = cochran_q(
        [comparisons[n].difference for n in names], [comparisons[n].se for n in names]
    )
    return effects, Interaction(metric, segment, q, dof, pq)
