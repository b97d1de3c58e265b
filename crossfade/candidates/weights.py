"""Confidence weights: how much each listening signal says a listener likes an item.

One play adds `play`; listening through adds up to `completion` (share of the item heard);
a skip adds `skip` (negative); a replay, a save and a playlist add add their weights. The
sum per (listener, item) is the ALS weight; pairs at or below `min_weight` are dropped, so a
track someone always skips never counts as a preference. Flagged bot accounts are left out.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.config import ConfidenceWeights

WEIGHT = "weight"


def interaction_weights(
    events: pd.DataFrame,
    items: pd.DataFrame,
    weights: ConfidenceWeights,
    exclude_users: Collection[str] = (),
) -> pd.DataFrame:
    """Confidence weight of every (listener, item) pair: columns user_id, item_id, weight."""
    frame = events
    if exclude_users:
        frame = frame[~frame[C.USER_ID].isin(set(exclude_users))]
    duration = frame[C.ITEM_ID].map(
        items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)[C.DURATION_MS]
    )
    heard = (frame[C.MS_PLAYED] / duration.replace(0, np.nan)).clip(0, 1).fillna(0).to_numpy()
    w = (
        weights.play
        + weights.completion * heard
        + weights.skip * frame[C.SKIPPED].to_numpy(dtype=float)
        + weights.replay * frame[C.REPLAY].to_numpy(dtype=float)
        + weights.save * frame[C.SAVED].to_numpy(dtype=float)
        + weights.playlist_add * frame[C.ADDED_TO_PLAYLIST].to_numpy(dtype=float)
    )
    pairs = pd.DataFrame(
        {C.USER_ID: frame[C.USER_ID].to_numpy(), C.ITEM_ID: frame[C.ITEM_ID].to_numpy(), WEIGHT: w}
    )
    summed = (
        pairs.groupby([C.USER_ID, C.ITEM_ID], sort=True, observed=True)[WEIGHT].sum().reset_index()
    )
    return summed[summed[WEIGHT] > weights.min_weight].reset_index(drop=True)
