"""Strict settings of the re-ranker, read from `configs/reranking.yaml`.

Every rule has its own section with an `enabled` switch and its parameters. Unknown keys
are an error, so a typo fails loudly instead of silently switching a rule off. Safety has
no `enabled` switch: dropping explicit items for minors cannot be turned off.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ConfigDict, Field, ValidationError

from crossfade.config import StrictModel, default_config_dir


class RerankingError(ValueError):
    """The re-ranking config is invalid; the message names the file and the problem."""


class SafetyConfig(StrictModel):
    """Safety filter. Explicit items are always dropped for minors (no switch for that)."""

    enforce_markets: bool = Field(True, description="drop items unavailable in the market")
    block_explicit_for_adults: bool = Field(False, description="a clean-only surface")


class FreshnessConfig(StrictModel):
    """Score boost `boost * exp(-age_days / half_life_days)` for recent releases."""

    enabled: bool = True
    boost: float = Field(0.1, ge=0, description="in ranker-score units")
    half_life_days: float = Field(14.0, gt=0)
    max_age_days: int = Field(60, ge=0, description="older releases get no boost")


class MMRConfig(StrictModel):
    """Maximal marginal relevance (Carbonell & Goldstein, 1998)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = True
    lambda_: float = Field(0.7, ge=0, le=1, alias="lambda", description="1 = relevance only")
    genre_similarity: float = Field(0.5, ge=0, le=1, description="same genre, other artist")


class ArtistCapConfig(StrictModel):
    """At most `max_per_artist` items of one artist in the top k."""

    enabled: bool = True
    max_per_artist: int = Field(2, ge=1)


class LongTailConfig(StrictModel):
    """At least `min_long_tail_share` of the top k from the long tail.

    The long tail is not configured here: it is the offline metric's definition
    (`crossfade.evaluation.metrics.HEAD_SHARE`), so the quota moves the number it is judged by.
    """

    enabled: bool = True
    min_long_tail_share: float = Field(0.2, ge=0, le=1)


class FairnessConfig(StrictModel):
    """Amortized creator-exposure fairness across requests."""

    enabled: bool = True
    fairness_weight: float = Field(1.0, ge=0)
    decay: float = Field(0.98, gt=0, le=1, description="per request; 1 = never forget")
    target_share: float | None = Field(
        None, ge=0, le=1, description="None: uniform over the artists seen so far"
    )


class RerankingConfig(StrictModel):
    """All rule sections; each rule is applied in the fixed order of `pipeline.RULE_ORDER`."""

    safety: SafetyConfig = SafetyConfig()
    freshness: FreshnessConfig = FreshnessConfig()
    mmr: MMRConfig = MMRConfig()
    artist_cap: ArtistCapConfig = ArtistCapConfig()
    long_tail: LongTailConfig = LongTailConfig()
    fairness: FairnessConfig = FairnessConfig()


def default_reranking_path() -> Path:
    """`reranking.yaml` in the config folder (so callers never spell a path)."""
    return default_config_dir() / "reranking.yaml"


def load_reranking(path: Path) -> RerankingConfig:
    """Read and validate a re-ranking config, with an error naming the file."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return RerankingConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise RerankingError(f"invalid re-ranking config {path}: {problems}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise RerankingError(f"invalid re-ranking config {path}: {exc}") from None
