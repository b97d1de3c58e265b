"""Data minimization: the feature allowlist per region and age group, enforced everywhere.

The policy lives in `configs/feature_policy.yaml`. `FeaturePolicy.apply` neutralizes the
features a listener's region and age group may not use (replaces them by their documented
default), so the same rule holds in training sets and in serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from crossfade.data import domains as D
from crossfade.features import catalog

AgeGroup = Literal["adult", "minor"]


class PolicyError(ValueError):
    """The policy file is invalid; the message names the file and the problem."""


class FeaturePolicy(BaseModel):
    """Allowed sensitivity classes per region and age group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: dict[str, list[str]]
    allow: dict[str, dict[AgeGroup, list[catalog.Sensitivity]]]

    @model_validator(mode="after")
    def _complete(self) -> FeaturePolicy:
        covered = [c for codes in self.regions.values() for c in codes]
        missing = sorted(set(D.COUNTRIES) - set(covered))
        twice = sorted({c for c in covered if covered.count(c) > 1})
        if missing or twice:
            raise ValueError(
                f"every country in exactly one region: missing={missing}, twice={twice}"
            )
        for region in self.regions:
            if set(self.allow.get(region, {})) != {"adult", "minor"}:
                raise ValueError(f"region {region!r} needs allow lists for adult and minor")
        return self

    def region_of(self, country: str) -> str:
        """The region a country belongs to (unknown countries fall into ZZ's region)."""
        for region, codes in self.regions.items():
            if country in codes:
                return region
        return self.region_of(D.UNKNOWN_COUNTRY)

    @staticmethod
    def age_group(age_bucket: str | None) -> AgeGroup:
        """Minors and unknown ages are both 'minor' (the safe default)."""
        return "adult" if age_bucket not in (None, *D.MINOR_AGE_BUCKETS) else "minor"

    def allowed(self, country: str, age_bucket: str | None, feature: str) -> bool:
        """Whether a listener of this country and age may have this feature used."""
        spec = catalog.BY_NAME[feature]
        classes = self.allow[self.region_of(country)][self.age_group(age_bucket)]
        return spec.sensitivity in classes

    def denied_features(self, country: str, age_bucket: str | None) -> list[str]:
        """Catalogue features this listener's region and age group may not use."""
        return [f.name for f in catalog.FEATURES if not self.allowed(country, age_bucket, f.name)]

    def apply(
        self,
        frame: pd.DataFrame,
        country_col: str = "user_country",
        age_col: str = "user_age_bucket",
    ) -> pd.DataFrame:
        """Replace denied features by their defaults, row by row (returns a new frame)."""
        out = frame.copy()
        if out.empty:
            return out
        countries = out[country_col].fillna(D.UNKNOWN_COUNTRY).astype(str)
        ages = out[age_col].fillna(D.UNKNOWN).astype(str)
        pairs = sorted(set(zip(countries, ages, strict=True)))
        # Age and country decide the policy, so every mask is taken before any is neutralized.
        masks = [((countries == c) & (ages == a)).to_numpy() for c, a in pairs]
        for (country, age), mask in zip(pairs, masks, strict=True):
            for name in self.denied_features(country, age):
                if name in out.columns:
                    default = catalog.BY_NAME[name].default
                    rows = out.index[mask]
                    out.loc[rows, name] = pd.Series([default] * len(rows), index=rows, dtype=object)
        return out


def load_policy(path: Path) -> FeaturePolicy:
    """Read and validate the policy file, with an error naming the file."""
    try:
        return FeaturePolicy.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise PolicyError(f"invalid feature policy {path}: {exc}") from None
