"""Experiment definitions: `configs/experiments/<name>.yaml`, strict and validated.

A definition says who is eligible (layer, holdout, ramp), how traffic splits, which metrics
decide (success metrics and guardrails from the metric tree), the risk levels, the looks and
the baselines the plan starts from. Unknown keys and metrics the tree lacks are errors.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crossfade.evaluation.metric_tree import MetricTree
from crossfade.experiments.corrections import Correction
from crossfade.experiments.sequential import Spending

Segment = Literal["country", "platform", "tier"]
SEGMENTS: tuple[Segment, ...] = ("country", "platform", "tier")


class ExperimentError(ValueError):
    """A definition or experiment input is invalid; the message names it and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RampStep(_Strict):
    """Share of eligible listeners exposed (all variants together) for a number of days."""

    share: float = Field(gt=0, le=1)
    days: int = Field(ge=1)


class Baseline(_Strict):
    """Per-listener mean and standard deviation of a metric in control, for planning."""

    mean: float
    sd: float = Field(gt=0)


class SequentialPlan(_Strict):
    """Planned looks and the alpha spending function."""

    looks: int = Field(7, ge=1, le=100)
    spending: Spending = "obrien_fleming"
    rho: float = Field(2.0, gt=0, description="exponent of the power family")


class ExperimentDefinition(_Strict):
    """One A/B experiment (see configs/experiments/discover_ranker.yaml)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    salt: str = Field(min_length=1, description="per-experiment hashing salt")
    layer: str = Field("default", min_length=1)
    layer_range: tuple[float, float] = (0.0, 1.0)
    holdout_share: float = Field(0.0, ge=0, lt=1, description="global holdout, never exposed")
    variants: dict[str, float] = Field(default_factory=lambda: {"control": 0.5, "treatment": 0.5})
    control: str = "control"
    success_metrics: list[str] = Field(min_length=1)
    guardrails: list[str] = []
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    correction: Correction = "bonferroni"
    sequential: SequentialPlan = SequentialPlan()
    listeners_per_day: int = Field(1000, ge=1, description="new eligible listeners per day")
    max_days: int = Field(28, ge=1)
    ramp: list[RampStep] = Field(default_factory=lambda: [RampStep(share=1.0, days=1)])
    mde: dict[str, float] = Field(default_factory=dict, description="relative MDE per metric")
    baselines: dict[str, Baseline] = Field(default_factory=dict)
    segments: list[Segment] = Field(default_factory=lambda: list(SEGMENTS))

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentDefinition:
        lo, hi = self.layer_range
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"layer_range must satisfy 0 <= low < high <= 1, got {lo}, {hi}")
        if self.control not in self.variants or len(self.variants) < 2:
            raise ValueError(
                f"variants {sorted(self.variants)} need the control {self.control!r} "
                "and a treatment"
            )
        if any(w <= 0 for w in self.variants.values()):
            raise ValueError(f"variant weights must be positive, got {self.variants}")
        overlap = set(self.success_metrics) & set(self.guardrails)
        if overlap:
            raise ValueError(f"metrics {sorted(overlap)} are both success metrics and guardrails")
        shares = [s.share for s in self.ramp]
        if any(b < a for a, b in itertools.pairwise(shares)):
            raise ValueError(f"ramp shares must not decrease, got {shares}")
        return self

    @property
    def metrics(self) -> list[str]:
        """Success metrics then guardrails."""
        return [*self.success_metrics, *self.guardrails]

    @property
    def treatments(self) -> list[str]:
        """Every variant but the control."""
        return [v for v in self.variants if v != self.control]

    def ramp_share(self, day: int) -> float:
        """Exposed share of eligible listeners on experiment day `day` (0-based)."""
        elapsed = 0
        for step in self.ramp:
            elapsed += step.days
            if day < elapsed:
                return step.share
        return self.ramp[-1].share

    def check_metrics(self, tree: MetricTree) -> None:
        """Every metric must be in the tree with an online measurement; else ExperimentError."""
        missing = [m for m in self.metrics if m not in tree.online]
        if missing:
            raise ExperimentError(
                f"experiment {self.name!r}: metric(s) {missing} are not measured online in the "
                f"metric tree; choose from {sorted(tree.online)} or add an `online` entry "
                "to configs/metrics.yaml"
            )
        for name in self.guardrails:
            if name not in tree.guardrails():
                raise ExperimentError(
                    f"experiment {self.name!r}: {name!r} is not a guardrail in the metric tree"
                )


def experiments_config_dir(config_dir: Path) -> Path:
    """Where experiment definitions live: `<configs>/experiments/`."""
    return config_dir / "experiments"


def load_definition(path: Path | str) -> ExperimentDefinition:
    """Read and validate an experiment definition; errors name the file and each key path."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ExperimentError(f"cannot read experiment definition {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ExperimentError(f"experiment definition {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ExperimentError(f"experiment definition {path}: expected a mapping at the top level")
    try:
        return ExperimentDefinition.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ExperimentError(f"invalid experiment definition {path}: {problems}") from None


def normal_quantile_sum(alpha: float, power: float, two_sided: bool) -> float:
    """z_{1-alpha/2} (or z_{1-alpha}) + z_{power}: the planning constant."""
    from scipy import stats

    a = alpha / 2 if two_sided else alpha
    return float(stats.norm.isf(a) + stats.norm.ppf(power))


__all__ = [
    "Baseline",
    "ExperimentDefinition",
    "ExperimentError",
    "RampStep",
    "SequentialPlan",
    "experiments_config_dir",
    "load_definition",
]
