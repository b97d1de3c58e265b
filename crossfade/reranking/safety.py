"""Safety filter: no explicit items for minors, nothing unavailable in the listener's market.

Runs first and again on the response. Ages outside the known adult buckets (including
"unknown" and None) count as minors, and a country outside the known markets counts as
"ZZ", whose listeners only get items available in every market: the safe defaults.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.data import domains as D

EXPLICIT_TAG = "safety_explicit"
MARKET_TAG = "safety_market"


def is_minor(age_bucket: str | None) -> bool:
    """Whether explicit content is off for this listener (minors and unknown ages)."""
    return (
        age_bucket is None or age_bucket in D.MINOR_AGE_BUCKETS or age_bucket not in D.AGE_BUCKETS
    )


def markets_of(value: object) -> frozenset[str]:
    """The markets in a comma-separated `available_markets` value (empty if missing)."""
    if not isinstance(value, str):
        return frozenset()
    return frozenset(m.strip() for m in value.split(",") if m.strip())


def available_in(value: object, country: str) -> bool:
    """Whether an item with these markets may be shown in `country` ("ZZ": all markets)."""
    markets = markets_of(value)
    if country in D.MARKETS:
        return country in markets
    return markets.issuperset(D.MARKETS)


def safety_filter(
    frame: pd.DataFrame,
    country: str,
    age_bucket: str | None,
    *,
    enforce_markets: bool = True,
    block_explicit_for_adults: bool = False,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Drop unsafe rows, keeping the order; returns the kept rows and item -> reason tag.

    A missing `explicit` flag counts as explicit (unknown content is not shown to minors).
    """
    block_explicit = is_minor(age_bucket) or block_explicit_for_adults
    explicit = frame[C.EXPLICIT].map(lambda v: True if pd.isna(v) else bool(v))
    removed: dict[str, str] = {}
    keep: list[bool] = []
    for item, flag, markets in zip(
        frame[C.ITEM_ID], explicit, frame[C.AVAILABLE_MARKETS], strict=True
    ):
        if block_explicit and flag:
            removed[str(item)] = EXPLICIT_TAG
        elif enforce_markets and not available_in(markets, country):
            removed[str(item)] = MARKET_TAG
        keep.append(str(item) not in removed)
    return frame.loc[np.asarray(keep, dtype=bool)].reset_index(drop=True), removed
