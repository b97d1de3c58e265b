"""The metric tree (`configs/metrics.yaml`): north star, primary KPIs per tier, guardrails.

Offline gates, rollout guardrails and A/B analysis all read the same tree, so "better" means
one thing everywhere. The loader is strict: unknown keys, bad directions, weights that do not
sum to one and references to undefined guardrails fail with the file and key path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crossfade.config import default_config_dir

Direction = Literal["higher_is_better", "lower_is_better"]
Where = Literal["offline", "online"]
Tier = Literal["premium", "ad_supported"]


class MetricTreeError(ValueError):
    """The metric tree file is invalid; the message names the file and the key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NorthStar(_Strict):
    """The one long-horizon outcome: engaged listening that retains (cohort retention proxy)."""

    name: str
    description: str
    cohort: Literal["weekly", "monthly"]
    horizon_days: int = Field(ge=1)
    engaged_minutes_per_week: float = Field(gt=0)
    direction: Direction


class Kpi(_Strict):
    """A primary KPI of a tier, with its weight in the tier's objective."""

    name: str
    description: str
    direction: Direction
    weight: float = Field(gt=0, le=1)


class TierKpis(_Strict):
    """A tier's weighted KPIs and the guardrails they must respect."""

    kpis: list[Kpi] = Field(min_length=1)
    respects: list[str] = []

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> TierKpis:
        total = sum(k.weight for k in self.kpis)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"KPI weights must sum to 1, got {total:g}")
        names = [k.name for k in self.kpis]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate KPI names: {names}")
        return self


class Guardrail(_Strict):
    """A metric that must not get worse: direction, absolute bound, relative margin, where."""

    description: str
    direction: Direction
    threshold: float | None
    non_inferiority_margin: float = Field(ge=0, lt=1)
    measured: list[Where] = Field(min_length=1)


class OfflineGuardrail(_Strict):
    """An offline metric (an `evaluate_all` key) checked on behalf of a guardrail."""

    guardrail: str
    threshold: float | None = None


class OfflineGate(_Strict):
    """The ranker's offline registration gate: primary metric and guardrail metrics."""

    primary: str
    min_primary_improvement: float = Field(0.0, ge=0)
    primary_threshold: float | None = None
    guardrails: dict[str, OfflineGuardrail] = {}


class OfflineCheck(_Strict):
    """One resolved offline guardrail: metric key with its guardrail's direction and margin."""

    metric: str
    guardrail: str
    direction: Direction
    non_inferiority_margin: float
    threshold: float | None


class OnlineMetric(_Strict):
    """How an experiment measures a tree metric per listener from daily signals.

    kind: `proportion` (one 0/1 outcome per listener), `mean` (per-listener average of
    numerator / denominator, Welch t-test) or `ratio` (sum of numerators over sum of
    denominators, delta method). `window_days` makes a metric cohort-based: only listeners
    first exposed at least that many days before the end count, over that fixed window.
    """

    kind: Literal["proportion", "mean", "ratio"]
    numerator: str
    denominator: str | None = None
    scale: float = Field(1.0, gt=0)
    tiers: list[Tier] = []
    window_days: int | None = Field(None, ge=1)


class MetricTree(_Strict):
    """The whole tree; see `configs/metrics.yaml`."""

    north_star: NorthStar
    primary_kpis: dict[Tier, TierKpis]
    guardrails_: dict[str, Guardrail] = Field(alias="guardrails")
    offline: OfflineGate
    online: dict[str, OnlineMetric] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _references_resolve(self) -> MetricTree:
        missing_tiers = {"premium", "ad_supported"} - set(self.primary_kpis)
        if missing_tiers:
            raise ValueError(f"primary_kpis lacks tiers: {sorted(missing_tiers)}")
        known = set(self.guardrails_)
        for tier, kpis in self.primary_kpis.items():
            unknown = [g for g in kpis.respects if g not in known]
            if unknown:
                raise ValueError(f"primary_kpis.{tier}.respects names unknown guardrails {unknown}")
        for metric, entry in self.offline.guardrails.items():
            if entry.guardrail not in known:
                raise ValueError(
                    f"offline.guardrails.{metric}.guardrail: unknown guardrail {entry.guardrail!r}"
                )
            if "offline" not in self.guardrails_[entry.guardrail].measured:
                raise ValueError(
                    f"offline.guardrails.{metric}: guardrail {entry.guardrail!r} "
                    "is not measured offline"
                )
        if self.offline.primary in self.offline.guardrails:
            raise ValueError(f"offline.primary {self.offline.primary!r} is also a guardrail")
        for name in self.online:
            if self.direction_of(name) is None:
                raise ValueError(f"online.{name}: not the north star, a primary KPI or a guardrail")
        return self

    def direction_of(self, name: str) -> Direction | None:
        """Direction of a north star, KPI or guardrail name (None if the tree lacks it)."""
        if name == self.north_star.name:
            return self.north_star.direction
        if name in self.guardrails_:
            return self.guardrails_[name].direction
        for kpis in self.primary_kpis.values():
            for kpi in kpis.kpis:
                if kpi.name == name:
                    return kpi.direction
        return None

    def guardrails(self, where: Where | None = None) -> dict[str, Guardrail]:
        """Guardrails by name, optionally only those measured `offline` or `online`."""
        return {n: g for n, g in self.guardrails_.items() if where is None or where in g.measured}

    @property
    def primary_offline(self) -> str:
        """The offline metric a candidate ranker must improve (e.g. `ndcg@10`)."""
        return self.offline.primary

    def offline_checks(self) -> list[OfflineCheck]:
        """Offline guardrail metrics resolved against their guardrails, in file order."""
        out = []
        for metric, entry in self.offline.guardrails.items():
            g = self.guardrails_[entry.guardrail]
            out.append(
                OfflineCheck(
                    metric=metric,
                    guardrail=entry.guardrail,
                    direction=g.direction,
                    non_inferiority_margin=g.non_inferiority_margin,
                    threshold=entry.threshold,
                )
            )
        return out


def default_metric_tree_path() -> Path:
    """`metrics.yaml` in the config folder (so callers never spell a path)."""
    return default_config_dir() / "metrics.yaml"


def load_metric_tree(path: Path | str | None = None) -> MetricTree:
    """Read and validate the metric tree (default: `default_metric_tree_path()`); errors name
    the file and each offending key path, so a typo fails loudly instead of being ignored."""
    path = Path(path) if path is not None else default_metric_tree_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MetricTreeError(f"invalid metric tree {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise MetricTreeError(f"invalid metric tree {path}: expected a mapping at the top level")
    try:
        return MetricTree.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise MetricTreeError(f"invalid metric tree {path}: {problems}") from None
