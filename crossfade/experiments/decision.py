"""The decision: Spotify's risk-aware rule, with reasons metric by metric.

- INVALID when the sample-ratio-mismatch check flags the data: no effect can be trusted;
- ABORT as soon as a guardrail (or a success metric) is significantly worse;
- SHIP when at least one success metric is significantly better and every guardrail is
  significantly non-inferior;
- otherwise CONTINUE until the planned end, then INCONCLUSIVE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

Role = Literal["success", "guardrail"]


class Decision(StrEnum):
    """What to do with the treatment."""

    SHIP = "SHIP"
    ABORT = "ABORT"
    CONTINUE = "CONTINUE"
    INCONCLUSIVE = "INCONCLUSIVE"
    INVALID = "INVALID"


@dataclass(frozen=True)
class MetricVerdict:
    """One metric's outcome at a look, already judged against its sequential bounds."""

    metric: str
    role: Role
    better: bool  # significantly better (success metrics)
    worse: bool  # significantly worse (any metric)
    non_inferior: bool  # significantly non-inferior (guardrails)
    summary: str  # effect and interval, for the reason line

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class DecisionResult:
    """The decision and one reason per metric (plus SRM and timing)."""

    decision: Decision
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"decision": self.decision.value, "reasons": list(self.reasons)}


def decide(
    verdicts: Sequence[MetricVerdict], srm_flagged: bool, srm_p: float, final: bool
) -> DecisionResult:
    """Apply the rule to the verdicts of one look; `final` is the planned last look."""
    reasons = [
        f"SRM: {'MISMATCH' if srm_flagged else 'ok'} (chi-square p = {srm_p:.3g}"
        f"{', below 0.001: fix assignment before reading any effect' if srm_flagged else ''})"
    ]
    success = [v for v in verdicts if v.role == "success"]
    guardrails = [v for v in verdicts if v.role == "guardrail"]
    if not success:
        raise ValueError("a decision needs at least one success metric")
    for v in success:
        state = (
            "significantly better"
            if v.better
            else ("significantly WORSE" if v.worse else "not significant")
        )
        reasons.append(f"success {v.metric}: {state}; {v.summary}")
    for v in guardrails:
        if v.worse:
            state = "significantly WORSE (harm)"
        elif v.non_inferior:
            state = "non-inferior"
        else:
            state = "non-inferiority not yet shown"
        reasons.append(f"guardrail {v.metric}: {state}; {v.summary}")
    if srm_flagged:
        return DecisionResult(Decision.INVALID, reasons)
    if any(v.worse for v in verdicts):
        return DecisionResult(Decision.ABORT, reasons)
    if any(v.better for v in success) and all(v.non_inferior for v in guardrails):
        return DecisionResult(Decision.SHIP, reasons)
    if final:
        reasons.append("planned end reached without a ship or abort signal")
        return DecisionResult(Decision.INCONCLUSIVE, reasons)
    reasons.append("keep collecting data until the next planned look")
    return DecisionResult(Decision.CONTINUE, reasons)
