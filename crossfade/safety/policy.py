"""The safety policy: bot-detection rules and bias-audit thresholds from configs/safety.yaml.

Strict like every setting: an unknown or missing key fails with the file name, so a typo in a
threshold can never silently switch a check off.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class SafetyPolicyError(ValueError):
    """The safety policy file is invalid; the message names the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotRules(_Strict):
    """Stream-farm rules and the anomaly vote; each fired rule adds 1 to an account's score."""

    min_plays: int = Field(ge=1)
    near_threshold_share: float = Field(ge=0, le=1)
    hour_entropy: float = Field(ge=0, le=1)
    item_entropy: float = Field(ge=0, le=1)
    lockstep_share: float = Field(ge=0, le=1)
    max_engagement_share: float = Field(ge=0, le=1)
    anomaly_contamination: float = Field(gt=0, le=0.5)
    threshold: int = Field(ge=1, le=6)


class AuditThresholds(_Strict):
    """Bias-audit bounds a model version must respect to be registered."""

    head_play_share: float = Field(gt=0, lt=1)
    max_exposure_gini: float = Field(ge=0, le=1)
    min_long_tail_share: float = Field(ge=0, le=1)
    max_popularity_lift: float = Field(gt=0)
    min_local_share_ratio: float = Field(ge=0)
    min_market_listens: int = Field(ge=0)
    min_expected_local_slots: float = Field(
        10.0, ge=0, description="a market is gated only when this many local slots are expected"
    )
    artist_size_quantiles: tuple[float, float]
    max_large_artist_lift: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AuditThresholds:
        low, high = self.artist_size_quantiles
        if not 0 < low < high < 1:
            raise ValueError(f"artist_size_quantiles must be 0 < low < high < 1, got {low, high}")
        return self


class SafetyPolicy(_Strict):
    """Everything configs/safety.yaml holds."""

    bots: BotRules
    audits: AuditThresholds


def load_safety_policy(path: Path) -> SafetyPolicy:
    """Read and validate the safety policy, with an error naming the file."""
    try:
        return SafetyPolicy.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise SafetyPolicyError(
            f"invalid safety policy {path}: {exc}; fix the file (see docs/safety.md)"
        ) from None
