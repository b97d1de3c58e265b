"""CUPED: variance reduction with a pre-period covariate (Deng et al., 2013).

Y_adj = Y - theta (X - mean X), theta = cov(X, Y) / var(X), with theta and mean X pooled over
both groups so the adjustment cannot create a difference: the treatment effect estimate stays
unbiased and its variance shrinks by the squared correlation of X and Y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossfade.experiments.stats import StatsError


@dataclass(frozen=True)
class CupedResult:
    """Adjusted per-unit values of both groups, theta and the variance reduction achieved."""

    control: np.ndarray
    treatment: np.ndarray
    theta: float
    variance_reduction: float  # 1 - var(Y_adj) / var(Y), pooled


def cuped(
    y_control: np.ndarray,
    x_control: np.ndarray,
    y_treatment: np.ndarray,
    x_treatment: np.ndarray,
) -> CupedResult:
    """Adjust the outcome `y` of each group by its pre-period covariate `x`."""
    pairs = (("control", y_control, x_control), ("treatment", y_treatment, x_treatment))
    for name, y, x in pairs:
        if len(y) != len(x):
            raise StatsError(
                f"CUPED {name}: {len(y)} outcomes but {len(x)} covariates; one of each per unit"
            )
    y = np.concatenate([y_control, y_treatment]).astype(np.float64)
    x = np.concatenate([x_control, x_treatment]).astype(np.float64)
    if len(y) < 3:
        raise StatsError("CUPED needs at least 3 units")
    var_x = x.var(ddof=1)
    theta = float(np.cov(x, y, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    mean_x = x.mean()
    adj_c = np.asarray(y_control, dtype=np.float64) - theta * (np.asarray(x_control) - mean_x)
    adj_t = np.asarray(y_treatment, dtype=np.float64) - theta * (np.asarray(x_treatment) - mean_x)
    var_y = y.var(ddof=1)
    adjusted = np.concatenate([adj_c, adj_t]).var(ddof=1)
    reduction = float(1 - adjusted / var_y) if var_y > 0 else 0.0
    return CupedResult(adj_c, adj_t, theta, reduction)
