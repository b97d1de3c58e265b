"""Group sequential testing: Lan-DeMets alpha spending and two-sided boundaries.

Peeking at a fixed-horizon test after every look inflates the false-positive rate (10 looks at
|z| > 1.96: about 0.19). Spending the type I error over the information fraction t in (0, 1]
keeps it at alpha. Bounds are found by recursive numerical integration of the joint normal
distribution of the sequential z statistics (Armitage, McPherson and Rowe; Jennison and
Turnbull ch. 19): the density of the z statistic on the continuation region is carried from
look to look on a Simpson grid, and each bound is the root that spends exactly the alpha the
spending function allots to that look.

Two-sided symmetric bounds spend alpha/2 on each side, the convention of gsDesign and
ldbounds (O'Brien-Fleming type, K=5 equally spaced, alpha 0.05: 4.8769 ... 2.0310).

Overrun: when the final look holds more information than planned, the fractions are rescaled
so that the last look is t = 1 and spends all remaining alpha (no alpha is left unspent and
none is spent twice); bounds are always computed from the observed, not the planned, timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, special, stats

Spending = Literal["obrien_fleming", "pocock", "power"]
SPENDING_FUNCTIONS: tuple[str, ...] = ("obrien_fleming", "pocock", "power")
_GRID = 801  # Simpson points on each look's continuation region (odd)
_POWER_GRID = 241  # power calculations need less precision than the bounds


class SequentialError(ValueError):
    """Bad look timing or spending parameters; the message names the input."""


def spent_alpha(
    t: np.ndarray | float, alpha: float, kind: Spending, rho: float = 2.0
) -> np.ndarray:
    """Cumulative two-sided alpha spent by information fraction `t` (Lan-DeMets families)."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    side = alpha / 2.0
    with np.errstate(divide="ignore"):
        if kind == "obrien_fleming":
            z = stats.norm.isf(side / 2.0)
            per_side = np.where(t > 0, 2.0 - 2.0 * stats.norm.cdf(z / np.sqrt(t)), 0.0)
        elif kind == "pocock":
            per_side = side * np.log1p((np.e - 1.0) * t)
        elif kind == "power":
            if rho <= 0:
                raise SequentialError(f"power spending needs rho > 0, got {rho}")
            per_side = side * t**rho
        else:
            raise SequentialError(
                f"unknown spending function {kind!r}; choose one of {', '.join(SPENDING_FUNCTIONS)}"
            )
    return np.asarray(2.0 * per_side)


def information_fractions(information: Sequence[float], planned_max: float) -> np.ndarray:
    """Observed information (e.g. sample sizes) as fractions of the plan, with overrun handling.

    Looks must increase strictly. If the last look reaches or passes `planned_max`, it is the
    final analysis: every fraction is divided by the last look's information so it is t = 1.
    """
    info = np.asarray(information, dtype=np.float64)
    if info.ndim != 1 or len(info) == 0:
        raise SequentialError("information needs at least one look")
    if planned_max <= 0:
        raise SequentialError(f"planned_max must be positive, got {planned_max}")
    if (info <= 0).any() or (np.diff(info) <= 0).any():
        raise SequentialError(
            f"look information must be positive and increasing, got {info.tolist()}"
        )
    denominator = max(float(planned_max), float(info[-1]))
    return np.asarray(info / denominator)


def _simpson_weights(n: int) -> np.ndarray:
    w = np.ones(n)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w / 3.0


@dataclass(frozen=True)
class Boundary:
    """Two-sided symmetric efficacy bounds (z scale) at each look, and the alpha spent."""

    fractions: np.ndarray
    bounds: np.ndarray
    cumulative_alpha: np.ndarray

    def crossed(self, z: Sequence[float]) -> int | None:
        """Index of the first look whose |z| reaches its bound, or None."""
        for k, value in enumerate(z):
            if k < len(self.bounds) and abs(value) >= self.bounds[k]:
                return k
        return None


def _crossing(
    grid: np.ndarray,
    weights: np.ndarray,
    density: np.ndarray,
    t_prev: float,
    t_now: float,
    bound: float,
    drift: float,
) -> float:
    """P(continue until the previous look, then |Z_now| >= bound) given density at the
    previous look on `grid` (z scale); `drift` is the mean of Z at t = 1."""
    dt = t_now - t_prev
    mean = grid * np.sqrt(t_prev) + drift * dt
    sd = np.sqrt(dt)
    upper = special.ndtr(-(bound * np.sqrt(t_now) - mean) / sd)
    lower = special.ndtr((-bound * np.sqrt(t_now) - mean) / sd)
    return float(np.sum(weights * density * (upper + lower)))


def _propagate(
    grid: np.ndarray,
    weights: np.ndarray,
    density: np.ndarray,
    t_prev: float,
    t_now: float,
    bound: float,
    drift: float,
    points: int = _GRID,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density of Z_now on (-bound, bound) given the previous look's continuation density."""
    new_grid = np.linspace(-bound, bound, points)
    new_w = _simpson_weights(points) * (new_grid[1] - new_grid[0])
    dt = t_now - t_prev
    sd = np.sqrt(dt)
    s_new = new_grid * np.sqrt(t_now)
    mean = grid * np.sqrt(t_prev) + drift * dt
    u = (s_new[:, None] - mean[None, :]) / sd
    kernel = np.exp(-0.5 * u * u) * (np.sqrt(t_now) / (sd * np.sqrt(2 * np.pi)))
    return new_grid, new_w, kernel @ (weights * density)


def boundaries(
    fractions: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    kind: Spending = "obrien_fleming",
    rho: float = 2.0,
) -> Boundary:
    """Two-sided bounds at information `fractions` for total two-sided `alpha`."""
    t = np.asarray(fractions, dtype=np.float64)
    if len(t) == 0 or (t <= 0).any() or (t > 1 + 1e-12).any() or (np.diff(t) <= 0).any():
        raise SequentialError(f"fractions must increase within (0, 1], got {t.tolist()}")
    if not 0 < alpha < 1:
        raise SequentialError(f"alpha must be in (0, 1), got {alpha}")
    cumulative = spent_alpha(t, alpha, kind, rho)
    increments = np.diff(np.concatenate([[0.0], cumulative]))
    bounds = np.empty(len(t))
    bounds[0] = stats.norm.isf(max(increments[0], 1e-300) / 2.0)
    grid = np.linspace(-bounds[0], bounds[0], _GRID)
    weights = _simpson_weights(_GRID) * (grid[1] - grid[0])
    density = stats.norm.pdf(grid)
    for k in range(1, len(t)):
        target = increments[k]
        if target <= 1e-15:
            bounds[k] = np.inf if target <= 0 else 12.0
        else:

            def excess(
                b: float,
                k: int = k,
                target: float = target,
                grid: np.ndarray = grid,
                weights: np.ndarray = weights,
                density: np.ndarray = density,
            ) -> float:
                return _crossing(grid, weights, density, t[k - 1], t[k], b, 0.0) - target

            hi = 20.0
            if excess(0.0) < 0:
                bounds[k] = 0.0
            else:
                bounds[k] = optimize.brentq(excess, 0.0, hi, xtol=1e-10)
        if k < len(t) - 1:
            finite = min(bounds[k], 12.0)
            grid, weights, density = _propagate(grid, weights, density, t[k - 1], t[k], finite, 0.0)
    return Boundary(t, bounds, cumulative)


def crossing_probability(boundary: Boundary, drift: float) -> float:
    """Probability of crossing a bound at any look when Z at t = 1 has mean `drift` (power)."""
    t = boundary.fractions
    b = np.minimum(boundary.bounds, 12.0)
    total = float(
        stats.norm.sf(b[0] - drift * np.sqrt(t[0])) + stats.norm.cdf(-b[0] - drift * np.sqrt(t[0]))
    )
    points = _POWER_GRID
    grid = np.linspace(-b[0], b[0], points)
    weights = _simpson_weights(points) * (grid[1] - grid[0])
    density = stats.norm.pdf(grid - drift * np.sqrt(t[0]))
    for k in range(1, len(t)):
        total += _crossing(grid, weights, density, t[k - 1], t[k], b[k], drift)
        if k < len(t) - 1:
            grid, weights, density = _propagate(
                grid, weights, density, t[k - 1], t[k], b[k], drift, points
            )
    return total


def inflation_factor(
    looks: int, alpha: float, power: float, kind: Spending = "obrien_fleming", rho: float = 2.0
) -> float:
    """Maximum sample size of a group sequential design relative to the fixed-horizon one, for
    equally spaced looks (two-sided alpha, the given power)."""
    if looks < 1:
        raise SequentialError(f"looks must be >= 1, got {looks}")
    if looks == 1:
        return 1.0
    boundary = boundaries(np.arange(1, looks + 1) / looks, alpha, kind, rho)
    fixed = stats.norm.isf(alpha / 2) + stats.norm.isf(1 - power)
    drift = optimize.brentq(
        lambda d: crossing_probability(boundary, d) - power, fixed * 0.9, fixed * 1.5, xtol=1e-6
    )
    return float((drift / fixed) ** 2)
