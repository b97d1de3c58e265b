"""Guardrails: the strict schema of configs/guardrails.yaml and the evaluation of one window.

Each guardrail compares one measure of the candidate's slot (green, or shadow in the shadow
phase) with a threshold, absolutely or relative to blue. Fail closed: a missing measure, a value
that cannot be computed or a failed query is a BREACH; fewer samples than `min_samples` is
INCONCLUSIVE, never a pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crossfade.config import Settings
from deployments.rollout.observations import Measure, coverage, slot_measures
from deployments.rollout.store import RolloutStore

MEASURES = (
    "p99_latency_ms",
    "error_rate",
    "fallback_rate",
    "catalogue_diversity",
    "skip_rate",
    "save_rate",
    "shadow_overlap",
    "shadow_rank_corr",
    "shadow_score_drift",
    "shadow_error_rate",
    "shadow_p99_latency_ms",
)
Metric = Literal[
    "p99_latency_ms",
    "error_rate",
    "fallback_rate",
    "catalogue_diversity",
    "skip_rate",
    "save_rate",
    "shadow_overlap",
    "shadow_rank_corr",
    "shadow_score_drift",
    "shadow_error_rate",
    "shadow_p99_latency_ms",
]
RATE_MEASURES = ("error_rate", "fallback_rate", "skip_rate", "save_rate")
GuardedPhase = Literal["shadow", "canary", "switch", "bake"]
GUARDED_PHASES: tuple[str, ...] = ("shadow", "canary", "switch", "bake")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GuardrailSpec(_Strict):
    """One guardrail as configured."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    metric: Metric
    comparison: Literal["absolute", "relative_to_blue"]
    direction: Literal["lower_is_better", "higher_is_better"]
    threshold: float
    min_samples: int = Field(ge=1)
    phases: list[GuardedPhase] = Field(min_length=1)
    prometheus: str = Field(min_length=1)
    description: str = ""
    significance: float | None = Field(
        None,
        gt=0,
        lt=0.5,
        description="rates relative to blue only: breach only when the one-sided test at this "
        "level shows the candidate past the threshold (noise in a small window neither rolls "
        "back a good model nor hides a clearly bad one)",
    )
    min_green_percent: float = Field(
        0.0,
        ge=0,
        lt=100,
        description="judged only once green serves at least this share of listeners: a few "
        "dozen canary listeners asking again and again see far fewer distinct items than "
        "blue's whole audience, whatever the model",
    )
    cluster_size: int = Field(
        1,
        ge=1,
        description="observations per independent unit (feedback events of one answer share "
        "a listener and a list): the test counts samples / cluster_size",
    )

    @model_validator(mode="after")
    def _significance_for_relative_rates(self) -> GuardrailSpec:
        if self.significance is not None and (
            self.comparison != "relative_to_blue" or self.metric not in RATE_MEASURES
        ):
            raise ValueError(
                f"{self.name}: significance applies to rates relative to blue "
                f"({', '.join(RATE_MEASURES)}) only"
            )
        return self

    @model_validator(mode="after")
    def _shadow_measures_in_shadow_only(self) -> GuardrailSpec:
        if self.metric.startswith("shadow_") and self.phases != ["shadow"]:
            raise ValueError(f"{self.name}: {self.metric} exists in the shadow phase only")
        if self.metric.startswith("shadow_") and self.comparison != "absolute":
            raise ValueError(f"{self.name}: {self.metric} has no blue value; use absolute")
        if self.comparison == "relative_to_blue" and {"switch", "bake"} & set(self.phases):
            raise ValueError(
                f"{self.name}: relative_to_blue cannot run in switch or bake (blue serves "
                "no listeners at 100 % green); use an absolute threshold there"
            )
        return self


class ShadowPlan(_Strict):
    """Mirrored traffic before any listener sees the candidate."""

    share: float = Field(gt=0, le=1)
    windows: int = Field(ge=1)


class CanaryPlan(_Strict):
    """Green's share of listeners, step by step."""

    steps: list[float] = Field(min_length=1)
    windows_per_step: int = Field(ge=1)

    @field_validator("steps")
    @classmethod
    def _increasing_percentages(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s < 100 for s in steps):
            raise ValueError(f"canary steps must lie strictly between 0 and 100 %, got {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"canary steps must increase, got {steps}")
        return steps


class BakePlan(_Strict):
    """Passing windows at 100 % green before `champion` moves."""

    windows: int = Field(ge=1)


class ControllerPlan(_Strict):
    """The controller's liveness and what evidence a window must hold to be judged."""

    missed_ticks: float = Field(
        gt=0,
        description="a controller heartbeat older than missed_ticks x its own tick interval "
        "(+ stale_margin_seconds) is dead: alert, pause the rollout, and discard the evidence "
        "of a window that spans the gap",
    )
    stale_margin_seconds: float = Field(
        ge=0, description="added to the limit: store latency, a slow tick, clock skew"
    )
    watch_seconds: float = Field(gt=0, description="how often the gateway checks the heartbeat")
    min_coverage: float = Field(
        ge=0,
        le=1,
        description="share of a window's buckets that must hold candidate observations; "
        "less is INCONCLUSIVE, never a pass",
    )
    coverage_buckets: int = Field(ge=1, description="a window is cut into this many buckets")

    def stale_after(self, tick_seconds: float) -> float:
        """Seconds after which the heartbeat of a controller ticking every `tick_seconds`
        is stale (one rule for the gateway's watch and the controller's gap check)."""
        return self.missed_ticks * tick_seconds + self.stale_margin_seconds


class RefusalAuditPlan(_Strict):
    """Refused admin requests: audited per client through a token bucket."""

    per_minute: float = Field(gt=0, description="audit rows a client's refusals earn per minute")
    burst: int = Field(ge=1, description="refusals audited in full before the rate applies")


class GuardrailsConfig(_Strict):
    """configs/guardrails.yaml."""

    window_seconds: float = Field(gt=0)
    inconclusive_grace_windows: int = Field(0, ge=0)
    controller: ControllerPlan
    refusal_audit: RefusalAuditPlan
    shadow: ShadowPlan
    canary: CanaryPlan
    bake: BakePlan
    guardrails: list[GuardrailSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_and_complete(self) -> GuardrailsConfig:
        names = [g.name for g in self.guardrails]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"guardrail names must be unique: {', '.join(dupes)}")
        unguarded = [p for p in GUARDED_PHASES if not self.for_phase(p)]
        if unguarded:
            raise ValueError(f"no guardrail covers phase(s) {', '.join(unguarded)}")
        return self

    def for_phase(self, phase: str, green_percent: float | None = None) -> list[GuardrailSpec]:
        """The guardrails evaluated in a phase (lower-case phase name); with `green_percent`,
        only those whose `min_green_percent` the split reaches."""
        return [
            g
            for g in self.guardrails
            if phase.lower() in g.phases
            and (green_percent is None or green_percent >= g.min_green_percent)
        ]


class GuardrailsError(ValueError):
    """The guardrails file is missing or invalid; the message names the file and the keys."""


def guardrails_path(settings: Settings) -> Path:
    """Where the settings say the guardrails file is."""
    return settings.config_path / settings.rollout.guardrails_file


def load_guardrails(path: Path) -> GuardrailsConfig:
    """Parse and validate a guardrails file (unknown keys are an error)."""
    if not path.is_file():
        raise GuardrailsError(f"guardrails file {path} does not exist; see configs/guardrails.yaml")
    try:
        data = yaml.safe_load(path.read_text())
        return GuardrailsConfig.model_validate(data)
    except yaml.YAMLError as exc:
        raise GuardrailsError(f"{path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise GuardrailsError(f"invalid guardrails file {path}: {problems}") from None


class Verdict(StrEnum):
    """Outcome of a guardrail, or of a whole window (worst of its guardrails)."""

    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"
    BREACH = "BREACH"


@dataclass(frozen=True)
class GuardrailResult:
    """One guardrail in one window, with every number a person needs to judge it."""

    name: str
    metric: str
    verdict: Verdict
    value: float | None
    blue_value: float | None
    compared: float | None
    threshold: float
    direction: str
    comparison: str
    samples: int
    min_samples: int
    detail: str


@dataclass(frozen=True)
class WindowResult:
    """All guardrails of one window; its verdict is the worst of theirs."""

    phase: str
    slot: str
    start: float
    end: float
    results: list[GuardrailResult] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """BREACH if any breached, else INCONCLUSIVE if any was, else PASS."""
        verdicts = {r.verdict for r in self.results}
        if Verdict.BREACH in verdicts or not self.results:
            return Verdict.BREACH
        if Verdict.INCONCLUSIVE in verdicts:
            return Verdict.INCONCLUSIVE
        return Verdict.PASS

    def summary(self) -> str:
        """One line naming the guardrails that did not pass."""
        bad = [f"{r.name}: {r.detail}" for r in self.results if r.verdict != Verdict.PASS]
        return "; ".join(bad) if bad else "all guardrails passed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable (stored in the state and the audit log)."""
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        for r in data["results"]:
            r["verdict"] = str(r["verdict"])
            for key in ("value", "blue_value", "compared"):
                if r[key] is not None and not math.isfinite(r[key]):
                    r[key] = str(r[key])
        return data


def _relative(candidate: float, blue: float) -> float:
    if blue == 0:
        return 0.0 if candidate == 0 else math.copysign(math.inf, candidate)
    return candidate / blue - 1.0


def _usable(m: Measure | None) -> bool:
    return m is not None and m.value is not None and math.isfinite(m.value)


def margin_z(
    spec: GuardrailSpec, rate: float, samples: int, blue_rate: float, blue_samples: int
) -> float:
    """z of the candidate's rate past blue's rate moved by the threshold (positive = worse),
    counting samples / cluster_size independent units on each side."""
    n, n_blue = samples / spec.cluster_size, blue_samples / spec.cluster_size
    limit = blue_rate * (1 + spec.threshold)
    variance = (
        rate * (1 - rate) / n + (1 + spec.threshold) ** 2 * blue_rate * (1 - blue_rate) / n_blue
    )
    diff = rate - limit if spec.direction == "lower_is_better" else limit - rate
    if variance <= 0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / math.sqrt(variance)


def evaluate_guardrail(
    spec: GuardrailSpec, measures: Mapping[str, Mapping[str, Measure]], slot: str
) -> GuardrailResult:
    """Judge one guardrail on one window's measures of `slot` (and blue when relative)."""

    def result(
        verdict: Verdict,
        detail: str,
        value: float | None = None,
        blue: float | None = None,
        compared: float | None = None,
        samples: int = 0,
    ) -> GuardrailResult:
        return GuardrailResult(
            spec.name, spec.metric, verdict, value, blue, compared, spec.threshold,
            spec.direction, spec.comparison, samples, spec.min_samples, detail,
        )  # fmt: skip

    mine = measures.get(slot, {}).get(spec.metric)
    if mine is None:
        return result(Verdict.BREACH, f"{spec.metric} of {slot} is missing (fail closed)")
    if mine.samples < spec.min_samples:
        return result(
            Verdict.INCONCLUSIVE,
            f"{mine.samples} of {spec.min_samples} samples",
            mine.value,
            samples=mine.samples,
        )
    if not _usable(mine):
        return result(
            Verdict.BREACH,
            f"{spec.metric} of {slot} has no value over {mine.samples} samples (fail closed)",
            samples=mine.samples,
        )
    assert mine.value is not None
    compared = mine.value
    blue_value: float | None = None
    if spec.comparison == "relative_to_blue":
        blue = measures.get("blue", {}).get(spec.metric)
        if blue is None:
            return result(
                Verdict.BREACH, f"blue's {spec.metric} is missing (fail closed)", mine.value
            )
        if blue.samples < spec.min_samples:
            return result(
                Verdict.INCONCLUSIVE,
                f"blue has {blue.samples} of {spec.min_samples} samples",
                mine.value,
                blue.value,
                samples=mine.samples,
            )
        if not _usable(blue):
            return result(
                Verdict.BREACH, f"blue's {spec.metric} has no value (fail closed)", mine.value
            )
        assert blue.value is not None
        blue_value = blue.value
        compared = _relative(mine.value, blue.value)
    worse = (
        compared > spec.threshold
        if spec.direction == "lower_is_better"
        else compared < spec.threshold
    )
    bound = "<=" if spec.direction == "lower_is_better" else ">="
    what = "relative to blue " if spec.comparison == "relative_to_blue" else ""
    detail = f"{spec.metric} {what}{compared:.4g} (limit {bound} {spec.threshold:g})"
    if worse and spec.significance is not None and blue_value is not None:
        assert blue is not None
        z = margin_z(spec, mine.value, mine.samples, blue_value, blue.samples)
        needed = NormalDist().inv_cdf(1 - spec.significance)
        worse = z > needed
        verdict = "significant" if worse else "not significant"
        detail += f"; {verdict}: z {z:.2f} vs {needed:.2f} (one-sided {spec.significance:g})"
    return result(
        Verdict.BREACH if worse else Verdict.PASS,
        detail,
        mine.value,
        blue_value,
        compared,
        mine.samples,
    )


def evaluate_window(
    config: GuardrailsConfig,
    phase: str,
    slot: str,
    start: float,
    end: float,
    measures: Mapping[str, Mapping[str, Measure]] | None,
    error: str | None = None,
    green_percent: float | None = None,
) -> WindowResult:
    """Judge every guardrail of `phase` (at `green_percent`, when given); measures None (a
    failed query) breaches them all."""
    results: list[GuardrailResult] = []
    for spec in config.for_phase(phase, green_percent):
        if measures is None:
            results.append(
                GuardrailResult(
                    spec.name,
                    spec.metric,
                    Verdict.BREACH,
                    None,
                    None,
                    None,
                    spec.threshold,
                    spec.direction,
                    spec.comparison,
                    0,
                    spec.min_samples,
                    f"query failed (fail closed): {error or 'no measures'}",
                )
            )
        else:
            results.append(evaluate_guardrail(spec, measures, slot))
    return WindowResult(phase.lower(), slot, start, end, results)


COVERAGE = "window_coverage"


def coverage_result(config: GuardrailsConfig, covered: float) -> GuardrailResult:
    """The window's own check: enough of it holds candidate observations (else INCONCLUSIVE:
    a burst at one end of a long, mostly empty window is not evidence about the whole)."""
    need = config.controller.min_coverage
    buckets = config.controller.coverage_buckets
    verdict = Verdict.PASS if covered >= need else Verdict.INCONCLUSIVE
    return GuardrailResult(
        COVERAGE, COVERAGE, verdict, covered, None, covered, need, "higher_is_better",
        "absolute", round(covered * buckets), max(1, math.ceil(need * buckets)),
        f"{covered:.0%} of the window's {buckets} buckets hold candidate observations "
        f"(need {need:.0%})",
    )  # fmt: skip


def evaluate_from_store(
    store: RolloutStore,
    config: GuardrailsConfig,
    phase: str,
    slot: str,
    start: float,
    end: float,
    green_percent: float | None = None,
) -> WindowResult:
    """Query the window's observations and judge them; any query failure is a breach.

    Besides the guardrails, the window's coverage (how much of it holds observations of the
    candidate's slot) must reach `controller.min_coverage`, or the window is INCONCLUSIVE."""
    covered: float | None = None
    try:
        rows = store.observations(start, end)
        measures: dict[str, dict[str, Measure]] | None = slot_measures(rows)
        covered = coverage(rows, slot, start, end, config.controller.coverage_buckets)
        error = None
    except Exception as exc:  # fail closed on any store problem
        measures, error = None, f"{type(exc).__name__}: {exc}"
    window = evaluate_window(config, phase, slot, start, end, measures, error, green_percent)
    if covered is not None:
        window.results.append(coverage_result(config, covered))
    return window
