"""The offline registration gate: may a candidate ranker be registered, and as what?

It reads the metric tree, so the gate and the online guardrails agree on what "better" and
"no worse" mean. With no champion, the first candidate that has the primary metric and meets
every absolute threshold becomes champion. Otherwise a candidate must beat the champion on the
primary metric and be non-inferior on every offline guardrail; it then becomes a challenger
(the online test decides whether it replaces the champion). Missing or non-finite metrics fail
closed. Every check leaves a reason naming the metric, both values and the margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from crossfade.evaluation.metric_tree import MetricTree, OfflineCheck

PromoteTo = Literal["champion", "challenger"]


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the gate: pass or not, the role to register as, and why (one line a check)."""

    passed: bool
    promote_to: PromoteTo | None
    reasons: list[str] = field(default_factory=list)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _value(metrics: Mapping[str, float] | None, name: str) -> float | None:
    """The metric as a finite float, or None when absent or NaN/inf (fail closed)."""
    if metrics is None or name not in metrics:
        return None
    try:
        v = float(metrics[name])
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _threshold_ok(
    name: str, value: float, threshold: float | None, higher_is_better: bool
) -> tuple[bool, str | None]:
    """Check an absolute bound; returns (ok, reason or None when there is no bound)."""
    if threshold is None:
        return True, None
    if higher_is_better:
        ok = value >= threshold
        op = ">=" if ok else "<"
    else:
        ok = value <= threshold
        op = "<=" if ok else ">"
    verdict = "threshold met" if ok else "absolute threshold breached"
    return ok, f"{name} {_fmt(value)} {op} {_fmt(threshold)}: {verdict}"


def _non_inferior(check: OfflineCheck, cand: float, champ: float) -> tuple[bool, str]:
    """candidate >= champion x (1 - m) (higher is better) or <= champion x (1 + m)."""
    m = check.non_inferiority_margin
    # |champ| keeps the bound on the "worse" side for negative values; equal to the
    # textbook champion x (1 -/+ m) for the non-negative metrics of evaluate_all.
    if check.direction == "higher_is_better":
        bound = champ - abs(champ) * m
        ok = cand >= bound
        op, sign = (">=" if ok else "<"), "-"
    else:
        bound = champ + abs(champ) * m
        ok = cand <= bound
        op, sign = ("<=" if ok else ">"), "+"
    verdict = "non-inferior" if ok else "guardrail breached"
    return ok, f"{check.metric} {_fmt(cand)} {op} {_fmt(champ)} x (1 {sign} {m:g}): {verdict}"


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    tree: MetricTree,
) -> GateDecision:
    """Decide whether `candidate` (offline metrics, `evaluate_all` keys) may be registered,
    against the current `champion`'s metrics (None when there is none yet)."""
    reasons: list[str] = []
    passed = True
    primary = tree.primary_offline
    checks = tree.offline_checks()

    cand_primary = _value(candidate, primary)
    if cand_primary is None:
        passed = False
        reasons.append(f"{primary} missing or not finite in candidate: fail closed")
    else:
        ok, why = _threshold_ok(primary, cand_primary, tree.offline.primary_threshold, True)
        passed &= ok
        if why:
            reasons.append(why)

    for check in checks:
        cand = _value(candidate, check.metric)
        if cand is None:
            passed = False
            reasons.append(f"{check.metric} missing or not finite in candidate: fail closed")
            continue
        ok, why = _threshold_ok(
            check.metric, cand, check.threshold, check.direction == "higher_is_better"
        )
        passed &= ok
        if why:
            reasons.append(why)

    if champion is None:
        if passed:
            reasons.append("no champion: candidate becomes champion")
        return GateDecision(passed, "champion" if passed else None, reasons)

    champ_primary = _value(champion, primary)
    if champ_primary is None:
        passed = False
        reasons.append(f"{primary} missing or not finite in champion: fail closed")
    elif cand_primary is not None:
        delta = tree.offline.min_primary_improvement
        better = cand_primary > champ_primary + delta
        op = ">" if better else "<="
        target = _fmt(champ_primary) + (f" + {delta:g}" if delta else "")
        verdict = "primary improved" if better else "primary not better than champion"
        reasons.append(f"{primary} {_fmt(cand_primary)} {op} {target}: {verdict}")
        passed &= better

    for check in checks:
        cand = _value(candidate, check.metric)
        champ = _value(champion, check.metric)
        if cand is None:
            continue  # already failed above
        if champ is None:
            passed = False
            reasons.append(f"{check.metric} missing or not finite in champion: fail closed")
            continue
        ok, why = _non_inferior(check, cand, champ)
        passed &= ok
        reasons.append(why)

    return GateDecision(passed, "challenger" if passed else None, reasons)


def with_audit(
    decision: GateDecision, audit_passed: bool, audit_reasons: list[str]
) -> GateDecision:
    """Fold the bias audit (crossfade.safety.audits) into a gate decision: a version that
    breaks an audit threshold is refused whatever its metrics, with each breach as a reason."""
    reasons = [*decision.reasons, *audit_reasons]
    if audit_passed:
        return GateDecision(decision.passed, decision.promote_to, reasons)
    return GateDecision(False, None, [*reasons, "bias audit failed: registration refused"])
