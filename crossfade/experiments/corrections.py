"""Multiple-testing corrections: Bonferroni, Holm (step-down) and Benjamini-Hochberg (FDR).

Adjusted p-values are returned in the input order, so `adjusted[i] <= alpha` is the decision
for hypothesis i at family-wise (Bonferroni, Holm) or false-discovery (BH) level alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Correction = Literal["none", "bonferroni", "holm", "bh"]
CORRECTIONS: tuple[str, ...] = ("none", "bonferroni", "holm", "bh")


def adjust(p_values: Sequence[float], method: Correction) -> np.ndarray:
    """Adjusted p-values (capped at 1) for `method`; NaN or out-of-range p is an error."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be a flat list, got shape {p.shape}")
    if len(p) == 0:
        return p
    if not ((p >= 0) & (p <= 1)).all():
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m = len(p)
    if method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    if method == "holm":
        steps = np.maximum.accumulate(sorted_p * (m - np.arange(m)))
    elif method == "bh":
        steps = np.minimum.accumulate((sorted_p * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}")
    out = np.empty(m)
    out[order] = np.minimum(steps, 1.0)
    return out
