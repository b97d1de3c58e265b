"""Explicit ratings as training values: how much a rated interaction counts when a model
learns, while every rated interaction stays a positive wherever the models are scored.

Both mappings are factors on the row's weight that leave the neutral rating (3 of 5) at 1,
the factor of an unrated interaction, so a dataset without ratings (no `rating` column, or
NaN) gives exactly the plain models, whatever its weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.evaluation.baselines import ALSBaseline

NEUTRAL_RATING = 3.0
# the smallest training value a linear mapping may give (a value <= 0 would drop the pair)
MIN_VALUE = 0.05


def ratings_of(interactions: pd.DataFrame) -> np.ndarray:
    """The rating of each row as float, NaN where unknown (or no `rating` column at all)."""
    if C.RATING not in interactions:
        return np.full(len(interactions), np.nan)
    return pd.to_numeric(interactions[C.RATING], errors="coerce").to_numpy(dtype=np.float64)


def has_ratings(interactions: pd.DataFrame) -> bool:
    """Whether any row carries a rating."""
    return bool(np.isfinite(ratings_of(interactions)).any())


def linear_values(
    interactions: pd.DataFrame, slope: float, neutral: float = NEUTRAL_RATING
) -> np.ndarray:
    """1 + slope * (rating - neutral) per row, at least MIN_VALUE; 1 without a rating."""
    r = ratings_of(interactions)
    values = np.where(np.isfinite(r), 1.0 + slope * (r - neutral), 1.0)
    return np.maximum(values, MIN_VALUE)


def ratio_values(interactions: pd.DataFrame, neutral: float = NEUTRAL_RATING) -> np.ndarray:
    """rating / neutral per row (at least MIN_VALUE), 1 without a rating: as an ALS weight,
    confidence 1 + alpha * log1p(rating / 3)."""
    r = ratings_of(interactions)
    return np.maximum(np.where(np.isfinite(r), r / neutral, 1.0), MIN_VALUE)


class RatingALS(ALSBaseline):
    """ALSBaseline whose weight is the row's weight x rating / 3 (so with weight 1,
    confidence 1 + alpha * log1p(rating / 3)): a 5 counts more than a 1; unrated rows keep
    their weight, as in the plain model."""

    def _values(self, interactions: pd.DataFrame) -> np.ndarray:
        return super()._values(interactions) * ratio_values(interactions)
