"""The ranker's input matrix with NumPy: the request-path twin of `ranking.features`.

`crossfade.ranking.features.model_inputs(serving_inputs(...))` is the one definition of the
booster's inputs (training and the reference path in `crossfade.serving.reference` use it).
It builds a DataFrame column by column, about a hundred inserts per request. `RankerInputs`
computes the same numbers straight into a float32 matrix in `RF.FEATURES` order, from arrays
prepared once per model load (item rows and artists from `ServingCatalog`, the listener's
artist shares from `History`) and the request's own feature vector and item batch.

Every step mirrors a step of the reference, and `tests/unit/test_serving_fast_path.py`
checks on many generated requests that the matrices are equal, so the two cannot drift:

- candidate crosses: `ranking.dataset.candidate_features` (the model's own scoring calls);
- minimization: `FeaturePolicy.apply` on a request's rows reads one (country, age bucket)
  pair, so the denied features are replaced by their defaults once for the whole request;
- request context: `features.context.request_context` (local hour, weekday, weekend, device);
- crosses of listener vectors with item and request labels: `model_inputs`' `_pick`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from crossfade.candidates.generator import SOURCES, Candidate
from crossfade.candidates.model import CandidateModel
from crossfade.data import domains as D
from crossfade.features import catalog
from crossfade.features.online import FeatureVector, ItemFeatures, row_map, through
from crossfade.features.policy import FeaturePolicy
from crossfade.ranking import features as RF
from crossfade.ranking.dataset import History
from crossfade.serving.api import RequestContext
from crossfade.serving.catalog import ServingCatalog

_USER_LISTS = {
    "user_genre_affinity_28d": len(D.GENRES),
    "user_language_affinity_28d": len(D.LANGUAGES),
    "user_active_hours_28d": 24,
    "user_device_mix_28d": len(D.DEVICES),
}
_INDEX = {
    "genre": {v: i for i, v in enumerate(D.GENRES)},
    "language": {v: i for i, v in enumerate(D.LANGUAGES)},
    "device": {v: i for i, v in enumerate(D.DEVICES)},
    "market": {v: i for i, v in enumerate(D.MARKETS)},
}


def utc_offset_minutes(timezone: str, at: datetime) -> int:
    """The listener's UTC offset at the request time, in minutes (0 if unknown)."""
    offset = at.astimezone(ZoneInfo(timezone)).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def context_values(context: RequestContext) -> dict[str, Any]:
    """The `request_context` view's outputs for one request, without a DataFrame."""
    utc = context.timestamp.astimezone(UTC)
    local = utc + timedelta(minutes=utc_offset_minutes(context.timezone, context.timestamp))
    weekday = local.weekday()
    return {
        "ctx_hour_local": local.hour,
        "ctx_day_of_week_local": weekday,
        "ctx_is_weekend": int(weekday >= 5),
        "ctx_device": context.device if context.device in D.DEVICES else D.UNKNOWN,
        "utc_hour": utc.hour,
    }


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _vector(value: object, length: int) -> np.ndarray:
    """One list value as a dense float vector (`model_inputs`' `_vectors`, one row)."""
    out = np.zeros(length, dtype=np.float64)
    if _missing(value):
        return out
    values = np.asarray(value, dtype=np.float64)[:length]
    out[: len(values)] = values
    return out


def _rows_matrix(column: Any, n: int, length: int) -> np.ndarray:
    """A per-item list column as a dense [n, length] float matrix."""
    if isinstance(column, np.ndarray) and column.ndim == 2 and column.dtype != object:
        out = np.zeros((n, length), dtype=np.float64)
        width = min(length, column.shape[1])
        out[:, :width] = column[:, :width]
        return out
    return np.stack([_vector(v, length) for v in column]) if n else np.zeros((0, length))


def _positions(labels: Sequence[object], index: Mapping[str, int]) -> np.ndarray:
    """Position of each label (as a string) in a domain, -1 when it is not in it."""
    get: Callable[[object, int], int] = index.get  # type: ignore[assignment]
    if all(type(v) is str for v in labels):  # the usual case: no str() per label
        return np.fromiter(map(get, labels, repeat(-1)), dtype=np.int64, count=len(labels))
    return np.fromiter((get(str(v), -1) for v in labels), dtype=np.int64, count=len(labels))


def _positions_of(ids: Sequence[object]) -> dict[str, int]:
    """Row of each id (as a string) in a table listing `ids` in row order."""
    return {str(v): i for i, v in enumerate(ids)}


def _pick(vector: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per row, the listener vector's entry at the row's position (0 where none)."""
    picked = vector[np.clip(positions, 0, len(vector) - 1)]
    return np.where(positions >= 0, picked, 0.0)


class RankerInputs:
    """Builds the booster's float32 input matrix for one request; thread-safe (read-only)."""

    def __init__(
        self,
        catalog_: ServingCatalog,
        model: CandidateModel,
        history: History,
        policy: FeaturePolicy | None = None,
    ) -> None:
        self.catalog = catalog_
        self.model = model
        self.history = history
        self.policy = policy
        self.column = {name: i for i, name in enumerate(RF.FEATURES)}
        self._source_col = {s: self.column[f"src_{s}"] for s in SOURCES}
        self._denied: dict[tuple[str, str], frozenset[str]] = {}
        # catalogue row -> row of the collaborative model's and the content index's tables
        self._cf_row = row_map(catalog_.item_ids, _positions_of(model.cf.item_ids))
        self._content_row = row_map(catalog_.item_ids, _positions_of(model.content_index.item_ids))
        self._artist_code = {str(a): int(c) for a, c in zip(
            catalog_.artist_ids, catalog_.artist_codes, strict=True
        )}  # fmt: skip

    def rows(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Catalogue row of each candidate: the row the merge found it at, else looked up."""
        rows = np.fromiter((c.row for c in candidates), dtype=np.int64, count=len(candidates))
        lacking = np.flatnonzero(rows < 0)
        if lacking.size:  # built by hand, or outside the catalogue
            rows[lacking] = self.catalog.rows([candidates[int(i)].item_id for i in lacking])
        return rows

    def _artist_affinity(self, user_id: str, rows: np.ndarray) -> np.ndarray:
        """The listener's play share of each row's artist (0 for artists never played)."""
        shares = self.history.artist_share.get(user_id, {})
        out = np.zeros(len(rows), dtype=np.float64)
        if not shares:
            return out
        # the listener's few artists as sorted codes, matched by binary search (no array the
        # size of the catalogue's artists per request)
        played = sorted(
            (code, share)
            for artist, share in shares.items()
            if (code := self._artist_code.get(artist)) is not None
        )
        known = rows >= 0
        if played:
            codes = np.array([c for c, _ in played], dtype=np.int64)
            values = np.array([v for _, v in played], dtype=np.float64)
            wanted = self.catalog.artist_codes[rows[known]]
            at = np.minimum(np.searchsorted(codes, wanted), codes.size - 1)
            out[known] = np.where(codes[at] == wanted, values[at], 0.0)
        # an item outside the catalogue has no artist: the reference looks up str(NaN)
        out[~known] = shares.get("nan", 0.0)
        return out

    def _denied_for(self, country: object, age: object) -> frozenset[str]:
        """Features the policy neutralizes for this listener (cached per country and age)."""
        if self.policy is None:
            return frozenset()
        key = (
            D.UNKNOWN_COUNTRY if _missing(country) else str(country),
            D.UNKNOWN if _missing(age) else str(age),
        )
        denied = self._denied.get(key)
        if denied is None:
            denied = frozenset(self.policy.denied_features(*key))
            self._denied[key] = denied
        return denied

    def matrix(
        self,
        user_id: str,
        candidates: Sequence[Candidate],
        user: FeatureVector,
        items: ItemFeatures,
        context: RequestContext,
    ) -> np.ndarray:
        """The [candidates, FEATURES] float32 matrix `model_inputs` gives for this request."""
        ids = [c.item_id for c in candidates]
        if ids != items.item_ids and ids != [str(i) for i in items.item_ids]:
            raise ValueError("candidates and item features must list the same items in one order")
        n = len(ids)
        col = self.column
        out = np.zeros((n, len(RF.FEATURES)), dtype=np.float64)
        rows = self.rows(candidates)

        # candidate crosses (ranking.dataset.candidate_features), by catalogue row
        model = self.model
        outside = np.flatnonzero(rows < 0)  # not in the catalogue: the models' lookup by id
        user_vector = model.cf.user_vector(user_id)
        if user_vector is not None:  # else NaN -> 0, as the reference's nan_to_num
            cf_rows = through(self._cf_row, rows)
            scores_cf = np.zeros(n, dtype=np.float32)
            scores_cf[cf_rows >= 0] = model.cf.item_factors[cf_rows[cf_rows >= 0]] @ user_vector
            out[:, col["cf_score"]] = scores_cf
            if outside.size:
                found = model.cf.score(user_id, [ids[i] for i in outside])
                out[outside, col["cf_score"]] = np.nan_to_num(found, nan=0.0)
        profile = model.profile(user_id)
        if profile is not None:
            content_rows = through(self._content_row, rows)
            vectors = np.zeros((n, model.content_index.dim), dtype=np.float32)
            vectors[content_rows >= 0] = model.content_index.vectors[
                content_rows[content_rows >= 0]
            ]
            out[:, col["content_sim"]] = vectors @ profile
            if outside.size:
                out[outside, col["content_sim"]] = model.content_similarity(
                    user_id, [ids[i] for i in outside]
                )
        scores: list[float] = []
        counts: list[int] = []
        flag_rows: list[int] = []
        flag_cols: list[int] = []
        source_col = self._source_col
        for r, cand in enumerate(candidates):
            scores.append(cand.score)
            counts.append(len(cand.sources))
            for source in cand.sources:
                j = source_col.get(source)
                if j is not None:
                    flag_rows.append(r)
                    flag_cols.append(j)
        out[:, col["source_score"]] = scores
        out[:, col["n_sources"]] = counts
        out[flag_rows, flag_cols] = 1.0  # src_<source>: found by that source
        out[:, col["artist_affinity"]] = self._artist_affinity(user_id, rows)

        # store inputs, neutralized as FeaturePolicy.apply would (one listener per request)
        values = {
            name: user.values.get(name, catalog.BY_NAME[name].default)
            for name in (*RF.USER_INPUTS, "user_age_bucket")
        }
        item_cols: dict[str, Any] = {name: items.columns[name] for name in RF.ITEM_INPUTS}
        ctx = context_values(context)
        denied = self._denied_for(values["user_country"], values["user_age_bucket"])
        for name in denied:
            default = catalog.BY_NAME[name].default
            if name in values:
                values[name] = default
            elif name in item_cols:
                item_cols[name] = [default] * n
            elif name in RF.CONTEXT_INPUTS:
                ctx[name] = default

        # crosses of a listener feature with an item or request feature
        genres = _vector(values["user_genre_affinity_28d"], len(D.GENRES))
        out[:, col["genre_affinity"]] = _pick(
            genres, _positions(item_cols["item_genre"], _INDEX["genre"])
        )
        languages = _vector(values["user_language_affinity_28d"], len(D.LANGUAGES))
        out[:, col["language_affinity"]] = _pick(
            languages, _positions(item_cols["item_language"], _INDEX["language"])
        )
        hours = _vector(values["user_active_hours_28d"], 24)
        out[:, col["hour_affinity"]] = hours[ctx["utc_hour"]]
        devices = _vector(values["user_device_mix_28d"], len(D.DEVICES))
        device = _INDEX["device"].get(str(ctx["ctx_device"]), -1)
        out[:, col["device_affinity"]] = devices[device] if device >= 0 else 0.0
        plays = np.asarray(item_cols["item_plays_28d"], dtype=np.float64)
        market = _INDEX["market"].get(str(values["user_country"]), -1)
        if market >= 0:
            in_market = _rows_matrix(item_cols["item_market_plays_28d"], n, len(D.MARKETS))[
                :, market
            ]
            out[:, col["market_share"]] = np.divide(
                in_market, plays, out=np.zeros_like(in_market), where=plays > 0
            )
        out[:, col["is_episode"]] = np.fromiter(
            map(operator.eq, item_cols["item_content_type"], repeat("episode")),
            dtype=np.float64,
            count=n,
        )

        # numeric store features
        for name in RF.USER_NUMERIC:
            out[:, col[name]] = float(values[name])
        for name in RF.ITEM_NUMERIC:
            out[:, col[name]] = np.asarray(item_cols[name], dtype=np.float64)
        for name in RF.CONTEXT_NUMERIC:
            out[:, col[name]] = float(ctx[name])
        return out.astype(np.float32)
