"""Two-sample tests on summary statistics: proportions, means (Welch), ratios (delta method).

Every test reduces to a difference (treatment - control), its standard error and a z (or t)
statistic, so the same result object feeds corrections, sequential bounds, non-inferiority
and the decision. Variances are unpooled, as in spotify-confidence's z-test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

Direction = Literal["higher_is_better", "lower_is_better"]


class StatsError(ValueError):
    """Bad input to a test (empty group, negative count, mismatched units)."""


@dataclass(frozen=True)
class GroupStats:
    """Summary of one group for one metric: units, mean and variance of the per-unit value."""

    n: int
    mean: float
    variance: float


@dataclass(frozen=True)
class Comparison:
    """Treatment vs control: absolute difference, its standard error, test statistic, p."""

    control: GroupStats
    treatment: GroupStats
    difference: float
    se: float
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    dof: float | None = None

    @property
    def relative(self) -> float:
        """Difference relative to the control mean (nan when the control mean is 0)."""
        return self.difference / self.control.mean if self.control.mean else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["relative"] = self.relative
        return out


def _check_group(name: str, n: int) -> None:
    if n <= 1:
        raise StatsError(f"{name} group has {n} unit(s); a comparison needs at least 2 per group")


def _compare(c: GroupStats, t: GroupStats, alpha: float, dof: float | None = None) -> Comparison:
    diff = t.mean - c.mean
    se = float(np.sqrt(c.variance / c.n + t.variance / t.n))
    # Below a millionth of the metric's size a difference or an error is floating-point
    # rounding (a cost of 0.003 per request in both arms differed by 4e-19), not data.
    resolution = 1e-6 * max(abs(c.mean), abs(t.mean))
    if abs(diff) <= resolution:
        diff = 0.0
    if se <= resolution:
        se = 0.0
    # identical constant groups give z = 0; a difference with no noise is infinitely clear
    zero_se = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    stat = zero_se if se == 0 else diff / se
    if dof is None:
        p = float(2 * stats.norm.sf(abs(stat)))
        q = float(stats.norm.isf(alpha / 2))
    else:
        p = float(2 * stats.t.sf(abs(stat), dof))
        q = float(stats.t.isf(alpha / 2, dof))
    return Comparison(c, t, diff, se, float(stat), p, diff - q * se, diff + q * se, dof)


def proportion_test(
    successes_control: int,
    n_control: int,
    successes_treatment: int,
    n_treatment: int,
    alpha: float = 0.05,
) -> Comparison:
    """Two-proportion z-test (unpooled variance) with a Wald confidence interval."""
    for name, x, n in (
        ("control", successes_control, n_control),
        ("treatment", successes_treatment, n_treatment),
    ):
        if x < 0 or n < 0:
            raise StatsError(f"{name}: counts must be non-negative, got {x} of {n}")
        if x > n:
            raise StatsError(f"{name}: {x} successes exceed {n} trials")
        _check_group(name, n)
    pc, pt = successes_control / n_control, successes_treatment / n_treatment
    return _compare(
        GroupStats(n_control, pc, pc * (1 - pc)),
        GroupStats(n_treatment, pt, pt * (1 - pt)),
        alpha,
    )


def summarize(values: np.ndarray, name: str) -> GroupStats:
    """n, mean and sample variance (ddof 1) of per-unit values."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise StatsError(f"{name}: expected one value per unit, got shape {values.shape}")
    _check_group(name, len(values))
    if not np.isfinite(values).all():
        raise StatsError(f"{name}: values contain NaN or infinity")
    return GroupStats(len(values), float(values.mean()), float(values.var(ddof=1)))


def welch_from_stats(c: GroupStats, t: GroupStats, alpha: float = 0.05) -> Comparison:
    """Welch's t-test from group summaries (Welch-Satterthwaite degrees of freedom)."""
    _check_group("control", c.n)
    _check_group("treatment", t.n)
    a, b = c.variance / c.n, t.variance / t.n
    denom = a**2 / (c.n - 1) + b**2 / (t.n - 1)
    dof = (a + b) ** 2 / denom if denom > 0 else float(c.n + t.n - 2)
    return _compare(c, t, alpha, dof)


def welch_test(control: np.ndarray, treatment: np.ndarray, alpha: float = 0.05) -> Comparison:
    """Welch's t-test on per-unit values of the two groups."""
    return welch_from_stats(summarize(control, "control"), summarize(treatment, "treatment"), alpha)


def ratio_stats(numerator: np.ndarray, denominator: np.ndarray, name: str) -> GroupStats:
    """Ratio-of-sums metric (e.g. skips per play) per group, with its delta-method variance
    expressed as `variance / n` so it plugs into the same z machinery as a mean."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.shape != den.shape:
        raise StatsError(
            f"{name}: numerator has {num.shape[0]} units but denominator {den.shape[0]}; "
            "pass one numerator and one denominator per unit"
        )
    _check_group(name, len(num))
    if (den < 0).any() or (num < 0).any():
        raise StatsError(f"{name}: ratio metric inputs must be non-negative counts")
    mean_den = den.mean()
    if mean_den <= 0:
        raise StatsError(f"{name}: every denominator is 0; the ratio is undefined")
    ratio = num.sum() / den.sum()
    var_num, var_den = num.var(ddof=1), den.var(ddof=1)
    cov = np.cov(num, den, ddof=1)[0, 1]
    # Var(R) ~ (1/mu_d^2) [var_n - 2 R cov + R^2 var_d] / n
    unit_var = (var_num - 2 * ratio * cov + ratio**2 * var_den) / mean_den**2
    return GroupStats(len(num), float(ratio), float(max(unit_var, 0.0)))


def ratio_test(
    num_control: np.ndarray,
    den_control: np.ndarray,
    num_treatment: np.ndarray,
    den_treatment: np.ndarray,
    alpha: float = 0.05,
) -> Comparison:
    """z-test for a ratio metric (sum of numerators / sum of denominators) by the delta method."""
    return _compare(
        ratio_stats(num_control, den_control, "control"),
        ratio_stats(num_treatment, den_treatment, "treatment"),
        alpha,
    )


@dataclass(frozen=True)
class NonInferiority:
    """One-sided test that treatment is no worse than control by more than a relative margin."""

    margin: float
    null_difference: float
    statistic: float
    p_value: float
    bound: float  # one-sided confidence bound on the difference, in the harmful direction

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def non_inferiority(
    comparison: Comparison, margin: float, direction: Direction, alpha: float = 0.05
) -> NonInferiority:
    """H0: treatment is worse than control by at least `margin` x |control mean|.

    For a higher-is-better metric the null difference is -margin*|mu_c| and the test rejects
    when the difference is credibly above it; for a lower-is-better one it is +margin*|mu_c|.
    """
    if margin < 0:
        raise StatsError(f"non-inferiority margin must be >= 0, got {margin}")
    null = margin * abs(comparison.control.mean)
    se = comparison.se
    q = float(stats.norm.isf(alpha))
    if direction == "higher_is_better":
        null = -null
        z = (comparison.difference - null) / se if se > 0 else np.inf
        bound = comparison.difference - q * se
    else:
        z = (null - comparison.difference) / se if se > 0 else np.inf
        bound = comparison.difference + q * se
    return NonInferiority(margin, float(null), float(z), float(stats.norm.sf(z)), float(bound))
