"""Planning: sample size, minimum detectable effect and duration per metric, the look
schedule and the ramp, by Spotify's risk-aware rule.

- alpha is corrected over the success metrics only (Bonferroni: alpha / S, two-sided tests);
  guardrails are non-inferiority tests at one-sided alpha each (all must pass, so no
  correction is needed for them);
- every test is powered at 1 - beta / (G + 1), so the decision as a whole (one success metric
  and all G guardrails) keeps power 1 - beta;
- the group sequential design inflates the fixed-horizon sample size by the spending
  function's inflation factor for the planned number of looks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import stats

from crossfade.evaluation.metric_tree import MetricTree
from crossfade.experiments.definition import ExperimentDefinition, ExperimentError
from crossfade.experiments.sequential import inflation_factor


def sample_size_total(
    sd: float,
    effect: float,
    alpha: float,
    power: float,
    shares: tuple[float, float],
    two_sided: bool = True,
) -> float:
    """Total units (control + treatment) to detect an absolute `effect` with the given power.

    n_total = (z_a + z_b)^2 sd^2 (1/p_c + 1/p_t) / effect^2, p = each group's share of units.
    """
    if effect <= 0 or sd <= 0:
        raise ExperimentError(f"effect and sd must be positive, got effect {effect}, sd {sd}")
    a = alpha / 2 if two_sided else alpha
    z = stats.norm.isf(a) + stats.norm.ppf(power)
    p_c, p_t = shares
    return float(z**2 * sd**2 * (1 / p_c + 1 / p_t) / effect**2)


def detectable_effect(
    sd: float,
    n_total: float,
    alpha: float,
    power: float,
    shares: tuple[float, float],
    two_sided: bool = True,
) -> float:
    """Smallest absolute effect detectable with `n_total` units (inverse of the above)."""
    if n_total <= 0:
        return math.inf
    a = alpha / 2 if two_sided else alpha
    z = stats.norm.isf(a) + stats.norm.ppf(power)
    p_c, p_t = shares
    return float(z * sd * math.sqrt((1 / p_c + 1 / p_t) / n_total))


@dataclass(frozen=True)
class MetricPlan:
    """The plan of one metric."""

    metric: str
    role: str
    test: str
    direction: str
    baseline_mean: float
    baseline_sd: float
    alpha: float
    power: float
    target_relative: float  # the MDE (success) or the non-inferiority margin (guardrail)
    required_units: int  # total over control and treatment, sequential design
    days_needed: int | None  # None: not reachable within max_days
    detectable_relative: float  # at the planned duration

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class RampPlan:
    """One ramp step: exposure share, its days and the guardrail harm it can catch."""

    share: float
    first_day: int
    last_day: int
    units_by_end: int
    detectable_harm: dict[str, float]  # relative harm per guardrail at the step's end

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """The whole plan: metrics, duration, looks and ramp."""

    experiment: str
    alpha_success: float
    power_per_test: float
    inflation: float
    duration_days: int
    reachable: bool
    planned_units: int
    look_days: list[int]
    metrics: list[MetricPlan]
    ramp: list[RampPlan] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        return out


def units_by_day(definition: ExperimentDefinition, days: int) -> list[float]:
    """Cumulative exposed units (all variants) at the end of each day 0..days-1."""
    lo, hi = definition.layer_range
    eligible = definition.listeners_per_day * (1 - definition.holdout_share) * (hi - lo)
    out, total = [], 0.0
    for day in range(days):
        total += eligible * definition.ramp_share(day)
        out.append(total)
    return out


def _shares(definition: ExperimentDefinition) -> tuple[float, float]:
    weights = definition.variants
    total = sum(weights.values())
    treatment = definition.treatments[0]
    return weights[definition.control] / total, weights[treatment] / total


def plan_experiment(definition: ExperimentDefinition, tree: MetricTree) -> Plan:
    """Sample sizes, MDEs, duration, look days and ramp checks for a definition."""
    definition.check_metrics(tree)
    n_success, n_guard = len(definition.success_metrics), len(definition.guardrails)
    alpha_s = definition.alpha / n_success
    power = 1 - (1 - definition.power) / (n_guard + 1)
    seq = definition.sequential
    inflation = inflation_factor(seq.looks, definition.alpha, power, seq.spending, seq.rho)
    pair = _shares(definition)
    pair_share = sum(pair)  # share of exposed units in control + the first treatment
    cumulative = units_by_day(definition, definition.max_days)

    rows: list[tuple[str, str, float, float, float, float, bool]] = []
    for name in definition.metrics:
        role = "success" if name in definition.success_metrics else "guardrail"
        baseline = definition.baselines.get(name)
        if baseline is None:
            raise ExperimentError(
                f"experiment {definition.name!r}: no baseline for {name!r}; add "
                f"`baselines: {{{name}: {{mean: ..., sd: ...}}}}` (per-listener mean and sd in "
                "control, e.g. from the last weeks of the lake)"
            )
        if role == "success":
            relative = definition.mde.get(name)
            if relative is None or relative <= 0:
                raise ExperimentError(
                    f"experiment {definition.name!r}: success metric {name!r} needs a positive "
                    f"relative MDE under `mde` (e.g. {name}: 0.02 for 2%)"
                )
            rows.append((name, role, relative, baseline.mean, baseline.sd, alpha_s, True))
        else:
            margin = tree.guardrails()[name].non_inferiority_margin
            if margin <= 0:
                margin = definition.mde.get(name, 0.0)
            if margin <= 0:
                raise ExperimentError(
                    f"guardrail {name!r} has a zero non-inferiority margin in the metric tree; "
                    f"set `mde: {{{name}: ...}}` in the experiment to plan it"
                )
            rows.append((name, role, margin, baseline.mean, baseline.sd, definition.alpha, False))

    required = {}
    for name, _, relative, mean, sd, alpha, two in rows:
        effect = relative * abs(mean)
        n = sample_size_total(sd, effect, alpha, power, pair, two) * inflation
        required[name] = n / pair_share
    needed_days = {
        name: next((d + 1 for d, u in enumerate(cumulative) if u >= n), None)
        for name, n in required.items()
    }
    reachable = all(d is not None for d in needed_days.values())
    duration = (
        max(d for d in needed_days.values() if d is not None)
        if reachable
        else (definition.max_days)
    )
    planned_units = cumulative[duration - 1]
    looks = [
        next(d for d, u in enumerate(cumulative) if u >= planned_units * k / seq.looks - 1e-9)
        for k in range(1, seq.looks + 1)
    ]
    metrics = []
    for name, role, relative, mean, sd, alpha, two in rows:
        n_pair = planned_units * pair_share / inflation
        mde = detectable_effect(sd, n_pair, alpha, power, pair, two) / abs(mean)
        metrics.append(
            MetricPlan(
                metric=name,
                role=role,
                test=tree.online[name].kind,
                direction=str(tree.direction_of(name)),
                baseline_mean=mean,
                baseline_sd=sd,
                alpha=alpha,
                power=power,
                target_relative=relative,
                required_units=math.ceil(required[name]),
                days_needed=needed_days[name],
                detectable_relative=float(mde),
            )
        )
    ramp, first = [], 0
    for step in definition.ramp:
        last = min(first + step.days, duration) - 1
        if last < first:
            break
        units = cumulative[last]
        harm = {
            name: detectable_effect(sd, units * pair_share, definition.alpha, power, pair, True)
            / abs(mean)
            for name, role, _, mean, sd, _, _ in rows
            if role == "guardrail"
        }
        ramp.append(RampPlan(step.share, first, last, int(units), harm))
        first = last + 1
    return Plan(
        experiment=definition.name,
        alpha_success=alpha_s,
        power_per_test=power,
        inflation=inflation,
        duration_days=duration,
        reachable=reachable,
        planned_units=int(planned_units),
        look_days=looks,
        metrics=metrics,
        ramp=ramp,
    )
