"""The ranker's model inputs: store features (listener, item, request context) plus crosses.

One function, `model_inputs`, turns a frame of raw inputs into the numeric matrix the
boosters read, in training and in serving alike, so the two cannot drift apart:

- in training the raw store columns come from Feast point-in-time joins over the feature
  service `ranker_features_v1` (`flows/train_ranker.py`), one row per (request, candidate);
- in serving they come from the online path (`crossfade.features.online.OnlineFeatures`) and
  `crossfade.features.context.request_context`, assembled by `serving_inputs`.

The store names below are catalogue names (`crossfade.features.catalog`) and keep their
meaning; a test checks that every one of them is what the online path serves. The candidate
model's crosses (collaborative score, content similarity, sources, artist affinity) come from
`crossfade.ranking.dataset.candidate_features`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crossfade.candidates.generator import SOURCES
from crossfade.data import domains as D
from crossfade.features import catalog
from crossfade.features.online import FeatureVector, ItemFeatures
from crossfade.features.policy import FeaturePolicy

# Request inputs of the `request_context` on-demand view (what the client sends).
REQUEST_TS = "request_ts"
UTC_OFFSET = "utc_offset_minutes"
REQUEST_DEVICE = "device"
REQUEST_PLATFORM = "platform"
REQUEST_INPUTS: tuple[str, ...] = (REQUEST_TS, UTC_OFFSET, REQUEST_DEVICE, REQUEST_PLATFORM)

# Store features the ranker reads, by view (catalogue names).
USER_NUMERIC: tuple[str, ...] = (
    "user_plays_7d",
    "user_plays_28d",
    "user_skip_rate_7d",
    "user_skip_rate_28d",
    "user_completion_rate_28d",
    "user_save_rate_28d",
    "user_distinct_artists_28d",
    "user_days_since_signup",
)
USER_INPUTS: tuple[str, ...] = (
    *USER_NUMERIC,
    "user_genre_affinity_28d",
    "user_language_affinity_28d",
    "user_active_hours_28d",
    "user_device_mix_28d",
    "user_country",
)
ITEM_NUMERIC: tuple[str, ...] = (
    "item_plays_7d",
    "item_plays_28d",
    "item_popularity_28d",
    "item_skip_rate_28d",
    "item_save_rate_28d",
    "item_completion_rate_28d",
    "item_days_since_release",
    "item_duration_ms",
    "item_explicit",
    "item_danceability",
    "item_energy",
    "item_valence",
    "item_tempo",
    "item_acousticness",
    "item_speechiness",
)
ITEM_INPUTS: tuple[str, ...] = (
    *ITEM_NUMERIC,
    "item_market_plays_28d",
    "item_content_type",
    "item_genre",
    "item_language",
)
CONTEXT_NUMERIC: tuple[str, ...] = ("ctx_hour_local", "ctx_day_of_week_local", "ctx_is_weekend")
CONTEXT_INPUTS: tuple[str, ...] = (*CONTEXT_NUMERIC, "ctx_device")
STORE_INPUTS: tuple[str, ...] = (*USER_INPUTS, *ITEM_INPUTS, *CONTEXT_INPUTS)

# Crosses computed per candidate from the candidate model and the listener's history.
CANDIDATE_CROSSES: tuple[str, ...] = (
    "cf_score",
    "content_sim",
    "source_score",
    "n_sources",
    *(f"src_{s}" for s in SOURCES),
    "artist_affinity",
)
# Crosses of a listener feature with an item or request feature.
STORE_CROSSES: tuple[str, ...] = (
    "genre_affinity",
    "language_affinity",
    "hour_affinity",
    "device_affinity",
    "market_share",
    "is_episode",
)
FEATURES: tuple[str, ...] = (
    *CANDIDATE_CROSSES,
    *STORE_CROSSES,
    *USER_NUMERIC,
    *ITEM_NUMERIC,
    *CONTEXT_NUMERIC,
)


def _vectors(column: pd.Series, length: int) -> np.ndarray:
    """A column of list values (or None) as a dense [rows, length] float matrix."""
    out = np.zeros((len(column), length), dtype=np.float64)
    for row, value in enumerate(column.to_numpy()):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        values = np.asarray(value, dtype=np.float64)[:length]
        out[row, : len(values)] = values
    return out


def _pick(matrix: np.ndarray, labels: pd.Series, domain: Sequence[str]) -> np.ndarray:
    """Per row, the matrix entry at the position of the row's label in `domain` (0 if none)."""
    index = {value: i for i, value in enumerate(domain)}
    positions = labels.astype(str).map(index).fillna(-1).to_numpy(dtype=np.int64)
    rows = np.arange(len(labels))
    picked = matrix[rows, np.clip(positions, 0, matrix.shape[1] - 1)] if len(rows) else rows
    return np.where(positions >= 0, picked, 0.0).astype(np.float64)


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The booster's numeric inputs (columns `FEATURES`) from raw candidate and store columns.

    `frame` needs `CANDIDATE_CROSSES`, `STORE_INPUTS` and `request_ts`; it is the same call
    whether the store columns came from a point-in-time join or from the online store.
    """
    missing = [c for c in (*CANDIDATE_CROSSES, *STORE_INPUTS, REQUEST_TS) if c not in frame]
    if missing:
        raise ValueError(
            f"ranker inputs lack column(s) {', '.join(missing)}: join the store features "
            "(ranker_features_v1) and the candidate crosses first"
        )
    out = pd.DataFrame(index=frame.index)
    for name in CANDIDATE_CROSSES:
        out[name] = pd.to_numeric(frame[name]).astype(np.float64)
    genres = _vectors(frame["user_genre_affinity_28d"], len(D.GENRES))
    out["genre_affinity"] = _pick(genres, frame["item_genre"], D.GENRES)
    languages = _vectors(frame["user_language_affinity_28d"], len(D.LANGUAGES))
    out["language_affinity"] = _pick(languages, frame["item_language"], D.LANGUAGES)
    hours = _vectors(frame["user_active_hours_28d"], 24)
    utc_hour = pd.to_datetime(frame[REQUEST_TS], utc=True).dt.hour
    out["hour_affinity"] = _pick(hours, utc_hour.astype(str), [str(h) for h in range(24)])
    devices = _vectors(frame["user_device_mix_28d"], len(D.DEVICES))
    out["device_affinity"] = _pick(devices, frame["ctx_device"], D.DEVICES)
    market = _vectors(frame["item_market_plays_28d"], len(D.MARKETS))
    in_market = _pick(market, frame["user_country"], D.MARKETS)
    plays = pd.to_numeric(frame["item_plays_28d"]).to_numpy(dtype=np.float64)
    out["market_share"] = np.divide(in_market, plays, out=np.zeros_like(in_market), where=plays > 0)
    out["is_episode"] = (frame["item_content_type"] == "episode").to_numpy(dtype=np.float64)
    for name in (*USER_NUMERIC, *ITEM_NUMERIC, *CONTEXT_NUMERIC):
        out[name] = pd.to_numeric(frame[name]).astype(np.float64)
    return out[list(FEATURES)]


def serving_inputs(
    candidates: pd.DataFrame,
    user: FeatureVector,
    items: ItemFeatures,
    context: pd.DataFrame,
    policy: FeaturePolicy | None = None,
) -> pd.DataFrame:
    """Raw inputs of one request from the online path, in the shape training joins produce.

    `candidates` holds the candidate crosses per item (in `items.item_ids` order), `user` and
    `items` come from `OnlineFeatures`, `context` is one row of `request_context` output plus
    the request inputs. The minimization policy is applied to the whole frame, as
    `feature_repo.training.training_set` does for training rows.
    """
    if list(candidates["item_id"].astype(str)) != [str(i) for i in items.item_ids]:
        raise ValueError("candidates and item features must list the same items in one order")
    frame = candidates.reset_index(drop=True).copy()
    n = len(frame)
    # The policy reads country and age bucket, so both travel with the listener's inputs.
    for name in (*USER_INPUTS, "user_age_bucket"):
        value = user.values.get(name, catalog.BY_NAME[name].default)
        frame[name] = pd.Series([value] * n, index=frame.index, dtype=object)
    for name in ITEM_INPUTS:
        column = items.columns[name]
        frame[name] = list(column) if column.ndim == 2 else column
    row = context.iloc[0]
    for name in (*CONTEXT_INPUTS, *REQUEST_INPUTS):
        frame[name] = row[name]
    return policy.apply(frame) if policy is not None else frame
