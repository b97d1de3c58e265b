"""MMR diversity (Carbonell & Goldstein, 1998): trade relevance against redundancy.

Greedy: each step picks the item maximising
`lambda * relevance - (1 - lambda) * max similarity to the items already picked`, where
relevance is the min-max-normalised score and similarity is 1 for the same artist,
`genre_similarity` for the same genre (other artist), else 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.reranking.frame import SCORE, order_by_score

TAG = "mmr"


def relevance(scores: np.ndarray) -> np.ndarray:
    """Min-max-normalised scores in [0, 1]; all equal (or one item) gives 1 everywhere."""
    scores = np.nan_to_num(scores.astype(float), nan=np.nanmin(scores) if len(scores) else 0.0)
    lo, hi = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 0.0)
    if hi <= lo:
        return np.ones_like(scores)
    return (scores - lo) / (hi - lo)


def _codes(values: pd.Series) -> np.ndarray:
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes)


def mmr_rerank(frame: pd.DataFrame, *, lambda_: float, genre_similarity: float) -> pd.DataFrame:
    """The whole list in MMR order; ties go to (-score, item_id)."""
    work = order_by_score(frame)
    n = len(work)
    if n <= 1:
        return work
    rel = relevance(work[SCORE].to_numpy())
    artists = _codes(work[C.ARTIST_ID])
    genres = _codes(work[C.GENRE])
    max_sim = np.zeros(n)
    remaining = np.ones(n, dtype=bool)
    picked: list[int] = []
    for _ in range(n):
        value = np.where(remaining, lambda_ * rel - (1 - lambda_) * max_sim, -np.inf)
        i = int(np.argmax(value))  # first maximum = best (-score, item_id)
        picked.append(i)
        remaining[i] = False
        same_artist = (artists == artists[i]) & (artists >= 0)
        same_genre = (genres == genres[i]) & (genres >= 0)
        sim = np.where(same_artist, 1.0, np.where(same_genre, genre_similarity, 0.0))
        max_sim = np.maximum(max_sim, sim)
    return work.iloc[picked].reset_index(drop=True)
