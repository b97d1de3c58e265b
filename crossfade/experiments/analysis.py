"""Analysis of an experiment at its looks: tests per metric, CUPED, SRM, group sequential
bounds, non-inferiority, corrections, heterogeneous effects, novelty and the decision.

`analyze(definition, tree, units, daily, planned_units)` walks the looks (one per day with
data, or the given days) in order and stops at the first look whose decision is final (SHIP,
ABORT or INVALID); otherwise the last look decides (CONTINUE, or INCONCLUSIVE once the
planned information is reached). Frames are described in `crossfade.experiments.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crossfade.evaluation.metric_tree import MetricTree, OnlineMetric
from crossfade.experiments.assignment import EXPOSURE_DAY, VARIANT
from crossfade.experiments.corrections import adjust
from crossfade.experiments.cuped import cuped
from crossfade.experiments.decision import (
    Decision,
    DecisionResult,
    MetricVerdict,
    Role,
    decide,
)
from crossfade.experiments.definition import ExperimentDefinition, ExperimentError
from crossfade.experiments.hte import Interaction, SegmentEffect, segment_effects
from crossfade.experiments.metrics import DAY, UnitValues, online_spec, unit_values, validate_frames
from crossfade.experiments.novelty import NoveltyResult, novelty_trend
from crossfade.experiments.sequential import Boundary, boundaries, information_fractions
from crossfade.experiments.srm import SrmResult, srm_check
from crossfade.experiments.stats import (
    Comparison,
    NonInferiority,
    StatsError,
    non_inferiority,
    proportion_test,
    ratio_test,
    welch_test,
)

MIN_SEGMENT_UNITS = 10  # per group; smaller segments are not estimated


@dataclass
class MetricResult:
    """One metric at the deciding look."""

    metric: str
    role: str
    direction: str
    kind: str
    comparison: Comparison
    bound: float
    p_adjusted: float
    non_inferiority: NonInferiority | None
    variance_reduction: float | None
    verdict: MetricVerdict
    z_path: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "metric": self.metric,
            "role": self.role,
            "direction": self.direction,
            "kind": self.kind,
            "comparison": self.comparison.to_dict(),
            "bound": self.bound,
            "p_adjusted": self.p_adjusted,
            "non_inferiority": self.non_inferiority.to_dict() if self.non_inferiority else None,
            "variance_reduction": self.variance_reduction,
            "verdict": self.verdict.to_dict(),
            "z_path": self.z_path,
        }


@dataclass
class Analysis:
    """Everything the report shows."""

    experiment: str
    treatment: str
    look_days: list[int]
    fractions: list[float]
    deciding_look: int
    decision: DecisionResult
    srm: SrmResult
    metrics: list[MetricResult]
    boundary: Boundary
    segments: list[SegmentEffect] = field(default_factory=list)
    interactions: dict[str, list[Interaction]] = field(default_factory=dict)
    novelty: dict[str, NoveltyResult] = field(default_factory=dict)
    decisions_by_look: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "experiment": self.experiment,
            "treatment": self.treatment,
            "look_days": self.look_days,
            "fractions": self.fractions,
            "deciding_look": self.deciding_look,
            **self.decision.to_dict(),
            "decisions_by_look": self.decisions_by_look,
            "srm": self.srm.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics],
            "bounds": self.boundary.bounds.tolist(),
            "segments": [s.to_dict() for s in self.segments],
            "interactions": {k: [i.to_dict() for i in v] for k, v in self.interactions.items()},
            "novelty": {k: v.to_dict() for k, v in self.novelty.items()},
        }


def compare(
    spec: OnlineMetric, values: UnitValues, control: str, treatment: str, use_cuped: bool = True
) -> tuple[Comparison, float | None]:
    """Treatment vs control for one metric; CUPED (with a pre-period) for mean metrics."""
    variant = values.units[VARIANT].to_numpy()
    c, t = variant == control, variant == treatment
    num, den = values.numerator, values.denominator
    if c.sum() < 2 or t.sum() < 2:
        raise StatsError(
            f"{int(c.sum())} control and {int(t.sum())} treatment unit(s) counted; "
            "each group needs at least 2"
        )
    if spec.kind == "proportion":
        return proportion_test(
            int(num[c].sum()), int(c.sum()), int(num[t].sum()), int(t.sum())
        ), None
    if spec.kind == "ratio":
        return ratio_test(num[c], den[c], num[t], den[t]), None
    keep = den > 0
    y = np.divide(num, den, out=np.zeros_like(num), where=keep)
    x = np.divide(
        values.pre_numerator,
        values.pre_denominator,
        out=np.zeros_like(num),
        where=values.pre_denominator > 0,
    )
    cm, tm = c & keep, t & keep
    if use_cuped and np.var(x[keep]) > 0:
        adjusted = cuped(y[cm], x[cm], y[tm], x[tm])
        result = welch_test(adjusted.control, adjusted.treatment)
        return result, adjusted.variance_reduction
    return welch_test(y[cm], y[tm]), None


def _summary(comp: Comparison, kind: str) -> str:
    rel = comp.relative
    rel_text = f" ({rel:+.2%})" if np.isfinite(rel) else ""
    return (
        f"control {comp.control.mean:.4g}, treatment {comp.treatment.mean:.4g}, "
        f"difference {comp.difference:+.4g}{rel_text}, 95% CI [{comp.ci_low:.4g}, "
        f"{comp.ci_high:.4g}], p = {comp.p_value:.3g} ({kind})"
    )


def _look_days(daily: pd.DataFrame, units: pd.DataFrame, looks: Sequence[int] | None) -> list[int]:
    if looks is not None:
        days = sorted(set(int(d) for d in looks))
    else:
        start = int(units[EXPOSURE_DAY].min())
        days = sorted(int(d) for d in daily[DAY].unique() if d >= start)
    if not days:
        raise ExperimentError("no experiment days with data to analyse")
    return days


def analyze(
    definition: ExperimentDefinition,
    tree: MetricTree,
    units: pd.DataFrame,
    daily: pd.DataFrame,
    planned_units: float | None = None,
    looks: Sequence[int] | None = None,
    treatment: str | None = None,
    stop_early: bool = True,
) -> Analysis:
    """Analyse the experiment look by look and decide (see the module docstring)."""
    definition.check_metrics(tree)
    validate_frames(units, daily)
    treatment = treatment or definition.treatments[0]
    unknown = sorted(set(units[VARIANT]) - set(definition.variants))
    if unknown:
        raise ExperimentError(
            f"exposures name variant(s) {unknown} that the definition lacks "
            f"({sorted(definition.variants)})"
        )
    days = _look_days(daily, units, looks)
    info = [float((units[EXPOSURE_DAY] <= d).sum()) for d in days]
    keep = [i for i, n in enumerate(info) if n > 0 and (i == 0 or n > info[i - 1])]
    days, info = [days[i] for i in keep], [info[i] for i in keep]
    fractions = information_fractions(info, planned_units or info[-1])
    seq = definition.sequential
    n_success = len(definition.success_metrics)
    bound_success = boundaries(fractions, definition.alpha / n_success, seq.spending, seq.rho)
    bound_guard = boundaries(fractions, definition.alpha, seq.spending, seq.rho)
    bound_ni = boundaries(fractions, min(2 * definition.alpha, 0.99), seq.spending, seq.rho)
    specs = {m: online_spec(tree, m) for m in definition.metrics}
    z_paths: dict[str, list[float]] = {m: [] for m in definition.metrics}
    results: list[MetricResult] = []
    decisions: list[str] = []
    srm = None
    decision = None
    deciding = len(days) - 1
    for k, day in enumerate(days):
        exposed = units[units[EXPOSURE_DAY] <= day]
        counts = exposed[VARIANT].value_counts().to_dict()
        srm = srm_check(
            {v: int(counts.get(v, 0)) for v in definition.variants}, definition.variants
        )
        results = []
        p_success = []
        for name in definition.metrics:
            spec = specs[name]
            role: Role = "success" if name in definition.success_metrics else "guardrail"
            direction = str(tree.direction_of(name))
            values = unit_values(spec, units, daily, day)
            try:
                comp, reduction = compare(spec, values, definition.control, treatment)
            except StatsError as exc:
                if k < len(days) - 1 or spec.window_days is not None:
                    z_paths[name].append(float("nan"))
                    continue
                raise ExperimentError(f"metric {name!r} on day {day}: {exc}") from None
            sign = 1.0 if direction == "higher_is_better" else -1.0
            z = comp.statistic
            z_paths[name].append(float(z))
            bound = (bound_success if role == "success" else bound_guard).bounds[k]
            better = sign * z >= bound
            worse = -sign * z >= bound
            ni = None
            non_inferior = False
            if role == "guardrail":
                margin = tree.guardrails()[name].non_inferiority_margin
                ni = non_inferiority(comp, margin, direction, definition.alpha)  # type: ignore[arg-type]
                non_inferior = margin > 0 and ni.statistic >= bound_ni.bounds[k]
                if margin == 0:
                    # A zero margin cannot be shown non-inferior; it holds while not worse.
                    non_inferior = not worse
            else:
                p_success.append(comp.p_value)
            verdict = MetricVerdict(
                name,
                role,
                bool(better and role == "success"),
                bool(worse),
                bool(non_inferior),
                _summary(comp, spec.kind),
            )
            results.append(
                MetricResult(
                    name,
                    role,
                    direction,
                    spec.kind,
                    comp,
                    float(bound),
                    comp.p_value,
                    ni,
                    reduction,
                    verdict,
                )
            )
        adjusted = adjust(p_success, definition.correction)
        for r, p in zip([r for r in results if r.role == "success"], adjusted, strict=True):
            r.p_adjusted = float(p)
        if not any(r.role == "success" for r in results):
            decisions.append(Decision.CONTINUE.value)
            continue
        final = k == len(days) - 1 and fractions[k] >= 1 - 1e-9
        decision = decide([r.verdict for r in results], srm.flagged, srm.p_value, final)
        decisions.append(decision.decision.value)
        if stop_early and decision.decision in (Decision.SHIP, Decision.ABORT, Decision.INVALID):
            deciding = k
            break
    if decision is None or srm is None:
        raise ExperimentError("no look had enough data in both groups to compare any metric")
    for r in results:
        r.z_path = z_paths[r.metric][: deciding + 1]
    last_day = days[deciding]
    analysis = Analysis(
        experiment=definition.name,
        treatment=treatment,
        look_days=days,
        fractions=[float(f) for f in fractions],
        deciding_look=deciding,
        decision=decision,
        srm=srm,
        metrics=results,
        boundary=bound_success,
        decisions_by_look=decisions,
    )
    _heterogeneity(analysis, definition, specs, units, daily, last_day, treatment)
    _novelty(analysis, definition, specs, units, daily, last_day, treatment)
    return analysis


def _heterogeneity(
    analysis: Analysis,
    definition: ExperimentDefinition,
    specs: dict[str, OnlineMetric],
    units: pd.DataFrame,
    daily: pd.DataFrame,
    last_day: int,
    treatment: str,
) -> None:
    for name in definition.metrics:
        spec = specs[name]
        values = unit_values(spec, units, daily, last_day)
        for segment in definition.segments:
            comparisons: dict[str, Comparison] = {}
            for value, rows in values.units.groupby(segment):
                idx = rows.index.to_numpy()
                sub = UnitValues(
                    rows,
                    values.numerator[idx],
                    values.denominator[idx],
                    values.pre_numerator[idx],
                    values.pre_denominator[idx],
                )
                sizes = rows[VARIANT].value_counts()
                if (
                    min(sizes.get(definition.control, 0), sizes.get(treatment, 0))
                    < MIN_SEGMENT_UNITS
                ):
                    continue
                sub = UnitValues(
                    rows.reset_index(drop=True),
                    sub.numerator,
                    sub.denominator,
                    sub.pre_numerator,
                    sub.pre_denominator,
                )
                try:
                    comparisons[str(value)], _ = compare(
                        spec, sub, definition.control, treatment, use_cuped=False
                    )
                except StatsError:
                    continue
            if not comparisons:
                continue
            effects, interaction = segment_effects(name, segment, comparisons)
            analysis.segments.extend(effects)
            analysis.interactions.setdefault(name, []).append(interaction)


def _novelty(
    analysis: Analysis,
    definition: ExperimentDefinition,
    specs: dict[str, OnlineMetric],
    units: pd.DataFrame,
    daily: pd.DataFrame,
    last_day: int,
    treatment: str,
) -> None:
    first = int(units[EXPOSURE_DAY].min())
    overall = {r.metric: r.comparison.difference for r in analysis.metrics}
    for name in definition.success_metrics:
        spec = specs[name]
        if spec.window_days is not None or name not in overall:
            continue
        days, diffs, ses = [], [], []
        for offset in range(0, last_day - first + 1):
            values = unit_values(spec, units, daily, last_day, since_exposure=offset)
            try:
                comp, _ = compare(spec, values, definition.control, treatment, use_cuped=False)
            except StatsError:
                continue
            days.append(offset)
            diffs.append(comp.difference)
            ses.append(comp.se)
        analysis.novelty[name] = novelty_trend(days, diffs, ses, overall[name])
