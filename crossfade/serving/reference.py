"""The pandas request path, kept as the oracle of the fast one (and the benchmark's baseline).

These are the definitions the fast path must reproduce exactly: the ranker inputs through
`ranking.features.serving_inputs` + `model_inputs` (the training-time assembly), the
re-ranker's DataFrame for `reranking.Reranker`, and the response's safety check through
`reranking.safety.safety_filter`. `RecommendationPipeline(..., fast=False)` answers with them;
`tests/unit/test_serving_fast_path.py` compares both paths on generated requests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.candidates.generator import Candidate
from crossfade.candidates.model import CandidateModel
from crossfade.data import domains as D
from crossfade.features.context import request_context
from crossfade.features.online import FeatureVector, ItemFeatures
from crossfade.features.policy import FeaturePolicy
from crossfade.ranking import features as RF
from crossfade.ranking.dataset import History, candidate_features
from crossfade.reranking.frame import PLAY_SHARE_ABOVE, SCORE
from crossfade.reranking.safety import safety_filter
from crossfade.serving.api import RequestContext
from crossfade.serving.catalog import ServingCatalog
from crossfade.serving.fast_inputs import utc_offset_minutes


def ranker_matrix(
    model: CandidateModel,
    catalog: ServingCatalog,
    history: History,
    policy: FeaturePolicy | None,
    user_id: str,
    found: Sequence[Candidate],
    vector: FeatureVector,
    batch: ItemFeatures,
    ctx: RequestContext,
) -> np.ndarray:
    """The booster's float32 inputs, assembled with pandas exactly as in training."""
    items = pd.DataFrame({C.ITEM_ID: catalog.item_ids, C.ARTIST_ID: catalog.artist_ids})
    crosses = candidate_features(model, user_id, found, items, history)
    inputs = pd.DataFrame(
        {
            RF.REQUEST_TS: [pd.Timestamp(ctx.timestamp).tz_convert("UTC")],
            RF.UTC_OFFSET: [utc_offset_minutes(ctx.timezone, ctx.timestamp)],
            RF.REQUEST_DEVICE: [ctx.device],
            RF.REQUEST_PLATFORM: [ctx.platform],
        }
    )
    context = pd.concat([inputs, request_context(inputs)], axis=1)
    raw = RF.serving_inputs(crosses, vector, batch, context, policy)
    return RF.model_inputs(raw).to_numpy(dtype=np.float32)


def rerank_frame(
    catalog: ServingCatalog,
    ids: list[str],
    scores: np.ndarray,
    genres: np.ndarray | None,
) -> pd.DataFrame:
    """The re-ranker's input frame (`reranking.frame.REQUIRED`) for ranked candidates."""
    rows = catalog.rows(ids)
    safe = np.maximum(rows, 0)
    genre = genres if genres is not None else np.full(len(ids), D.UNKNOWN, dtype=object)
    return pd.DataFrame(
        {
            C.ITEM_ID: ids,
            SCORE: scores,
            C.ARTIST_ID: catalog.artist_ids[safe],
            C.GENRE: genre,
            C.EXPLICIT: np.where(rows >= 0, catalog.explicit[safe], True),
            PLAY_SHARE_ABOVE: np.where(rows >= 0, catalog.play_share_above[safe], 1.0),
            C.RELEASE_DATE: catalog.release_day[safe].astype("datetime64[D]"),
            C.AVAILABLE_MARKETS: np.where(rows >= 0, catalog.markets[safe], ""),
        }
    )


def shown_mask(
    catalog: ServingCatalog, ids: list[str], country: str, age_bucket: str | None
) -> np.ndarray:
    """Which of these (known) items `safety_filter` keeps for the listener."""
    rows = [catalog.index[i] for i in ids]
    frame = pd.DataFrame(
        {
            C.ITEM_ID: ids,
            C.EXPLICIT: [bool(catalog.explicit[r]) for r in rows],
            C.AVAILABLE_MARKETS: [catalog.markets[r] for r in rows],
        }
    )
    kept, _ = safety_filter(frame, country, age_bucket)
    allowed = set(kept[C.ITEM_ID])
    return np.array([i in allowed for i in ids], dtype=bool)
