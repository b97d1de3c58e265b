"""Shared helpers of the rules: the candidate frame's columns and deterministic ordering."""

from __future__ import annotations

import pandas as pd

from crossfade import columns as C

SCORE = "score"
# share of all plays taken by items played more (`evaluation.metrics.play_share_above`)
PLAY_SHARE_ABOVE = "play_share_above"
REQUIRED = (
    C.ITEM_ID,
    SCORE,
    C.ARTIST_ID,
    C.GENRE,
    C.EXPLICIT,
    PLAY_SHARE_ABOVE,
    C.RELEASE_DATE,
    C.AVAILABLE_MARKETS,
)


def prepare(candidates: pd.DataFrame) -> pd.DataFrame:
    """Check the columns, keep each item's first (best) row, string ids, a 0..n-1 index.

    Candidate sources can return one item twice; the first row wins so the output never
    repeats an item.
    """
    missing = [c for c in REQUIRED if c not in candidates.columns]
    if missing:
        raise ValueError(f"candidates lack column(s) {', '.join(missing)}")
    out = candidates.copy()
    out[C.ITEM_ID] = out[C.ITEM_ID].astype(str)
    out[SCORE] = out[SCORE].astype(float)
    out = out.drop_duplicates(subset=C.ITEM_ID, keep="first")
    return out.reset_index(drop=True)


def order_by_score(frame: pd.DataFrame, score: str = SCORE) -> pd.DataFrame:
    """Sort by (-score, item_id): the one tie-break every rule uses, so output is stable."""
    return frame.sort_values(
        [score, C.ITEM_ID], ascending=[False, True], kind="mergesort", na_position="last"
    ).reset_index(drop=True)


def artist_keys(frame: pd.DataFrame) -> list[str]:
    """Artist per row as a string; a missing artist counts as its own (per item) artist."""
    return [
        str(a) if pd.notna(a) else f"\x00missing:{item}"
        for a, item in zip(frame[C.ARTIST_ID], frame[C.ITEM_ID], strict=True)
    ]
