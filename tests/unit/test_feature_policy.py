"""Data minimization: the allowlist per region and age group."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crossfade.config import Settings
from crossfade.features import catalog
from crossfade.features.policy import FeaturePolicy, PolicyError, load_policy


@pytest.fixture
def policy(settings: Settings) -> FeaturePolicy:
    return load_policy(settings.config_path / settings.features.policy_file)


def test_minors_in_strict_regions_lose_age_and_location(policy: FeaturePolicy) -> None:
    denied = policy.denied_features("DE", "13-17")
    assert "user_age_bucket" in denied and "user_country" in denied
    assert "user_plays_28d" not in denied
    assert policy.denied_features("DE", "25-34") == []


def test_unknown_age_is_treated_as_a_minor(policy: FeaturePolicy) -> None:
    assert policy.denied_features("SE", "unknown") == policy.denied_features("SE", "13-17")


def test_apply_neutralizes_only_denied_rows(policy: FeaturePolicy) -> None:
    frame = pd.DataFrame(
        {
            "user_country": ["DE", "DE", "US"],
            "user_age_bucket": ["13-17", "35-44", "13-17"],
            "user_plays_28d": [10, 20, 30],
        }
    )
    out = policy.apply(frame)
    default_age = catalog.BY_NAME["user_age_bucket"].default
    assert out["user_age_bucket"].tolist() == [default_age, "35-44", default_age]
    assert out["user_country"].tolist() == [catalog.BY_NAME["user_country"].default, "DE", "US"]
    assert out["user_plays_28d"].tolist() == [10, 20, 30]
    assert frame["user_age_bucket"].tolist() == ["13-17", "35-44", "13-17"]  # input untouched


def test_every_country_must_be_in_exactly_one_region(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("regions: {strict: [DE]}\nallow: {strict: {adult: [], minor: []}}\n")
    with pytest.raises(PolicyError, match="missing"):
        load_policy(bad)
