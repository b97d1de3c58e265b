"""The candidate model: every retrieval source trained together, served by one object.

`train_candidates` builds it from lake frames; `CandidateModel.generate` answers one request;
`save`/`load` move it as a folder (the MLflow pyfunc in `model_registry/` bundles that folder).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.candidates.als import CollaborativeModel, fit_als
from crossfade.candidates.cold_start import ColdStartMapper, NewListenerSource
from crossfade.candidates.content import ContentModel, content_profiles
from crossfade.candidates.generator import Candidate, Listener, Ranked, merge_sources
from crossfade.candidates.index import ItemIndex
from crossfade.candidates.index import build as build_index
from crossfade.candidates.popularity import PopularityTables
from crossfade.candidates.weights import interaction_weights
from crossfade.config import CandidateSettings
from crossfade.data.lake import atomic_write_text

_PARTS = ("cf", "cf_index", "cold_index", "content", "content_index", "popularity", "cold_mapper")


@dataclass
class CandidateModel:
    """All retrieval sources of one model version."""

    settings: CandidateSettings
    trained_at: datetime
    cf: CollaborativeModel
    cf_index: ItemIndex  # warm items (ALS factors) + new items (mapped from content)
    cold_index: ItemIndex | None  # new items only, so they are not crowded out
    content: ContentModel
    content_index: ItemIndex
    profile_ids: list[str]
    profiles: np.ndarray
    popularity: PopularityTables
    cold_mapper: ColdStartMapper | None
    listeners: pd.DataFrame  # user_id, country, age_bucket, tier, plays
    onboarding: dict[str, list[str]]
    recent: dict[str, set[str]]  # items each listener heard in the exclusion window
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._profile_index = {u: i for i, u in enumerate(self.profile_ids)}
        self._listener = self.listeners.set_index(C.USER_ID)
        self._plays_by_user: dict[str, int] = dict(
            zip(
                self.listeners[C.USER_ID].astype(str),
                self.listeners["plays"].astype(int),
                strict=True,
            )
        )
        self._item_row = {str(item): row for row, item in enumerate(self.popularity.item_ids)}
        self.new_listeners = NewListenerSource.from_settings(self.popularity, self.settings)

    # --- serving -------------------------------------------------------------------------
    def listener(self, user_id: str) -> Listener:
        """The listener as known at training time (unknown: ZZ, unknown age → minor-safe)."""
        if user_id in self._listener.index:
            row = self._listener.loc[user_id]
            return Listener(user_id, str(row[C.COUNTRY]), str(row[C.AGE_BUCKET]), str(row[C.TIER]))
        return Listener(user_id)

    def _admit(self, listener: Listener, heard: set[str]) -> Any:
        """The merge's filter: each id's catalogue row if it may be shown, else -1."""
        playable = self.popularity.playable(listener.country)
        explicit = self.popularity.explicit_flags

        def admit(ids: Any) -> np.ndarray:
            rows = self._rows_of(ids)
            known = rows >= 0
            ok = known.copy()
            ok[known] &= playable[rows[known]]
            if listener.is_minor:
                ok[known] &= ~explicit[rows[known]]
            if heard:
                ok &= ~np.fromiter(map(heard.__contains__, ids), dtype=bool, count=len(ids))
            return np.where(ok, rows, -1)

        return admit

    def sources(self, listener: Listener, now: datetime, heard: set[str]) -> dict[str, Ranked]:
        """Each source's ranked items for this listener, before filtering and merging."""
        q = self.settings.quotas
        over = 3  # over-fetch: filters remove some
        out: dict[str, Ranked] = {}
        vector = self.cf.user_vector(listener.user_id)
        plays = self._plays(listener.user_id)
        if vector is not None:
            out["collaborative"] = self.cf_index.query(
                vector, q.get("collaborative", 0) * over, exclude=heard
            )
            if self.cold_index is not None:
                out["cold_start"] = self.cold_index.query(vector, q.get("cold_start", 0) * over)
        profile = self._profile_index.get(listener.user_id)
        if profile is not None:
            out["content"] = self.content_index.query(
                self.profiles[profile], q.get("content", 0) * over, exclude=heard
            )
        if vector is None or self.new_listeners.is_new(plays):
            out["cold_start"] = self.new_listeners.candidates(
                listener.user_id,
                listener.country,
                listener.age_bucket,
                listener.tier,
                self.onboarding.get(listener.user_id, []),
                q.get("cold_start", 0) * over,
            )
        out["popular_in_market"] = self.popularity.popular_in_market(
            listener.country, q.get("popular_in_market", 0) * over
        )
        out["fresh_releases"] = self.popularity.fresh_releases(
            listener.country,
            now,
            self.settings.fresh_release_days,
            q.get("fresh_releases", 0) * over,
        )
        out["episodes"] = self.popularity.episodes(listener.country, q.get("episodes", 0) * over)
        return out

    def profile(self, user_id: str) -> np.ndarray | None:
        """The listener's content profile vector, or None for a listener without one."""
        index = self._profile_index.get(user_id)
        return None if index is None else self.profiles[index]

    def content_similarity(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        """Cosine of each item's content embedding with the listener's profile (0 if none)."""
        profile = self.profile(user_id)
        if profile is None:
            return np.zeros(len(item_ids), dtype=np.float32)
        vectors, _ = self.content_index.vectors_of(item_ids)
        return vectors @ profile

    def popularity_share(self, item_ids: Sequence[str]) -> np.ndarray:
        """Each item's share of decayed plays (0 for items the tables do not know)."""
        rows = self._rows_of(item_ids)
        return np.where(rows >= 0, self.popularity.global_share()[np.maximum(rows, 0)], 0.0)

    def _rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each item in the popularity tables, -1 for an unknown item (per request:
        a dict lookup per id, much cheaper than building a pandas Index)."""
        return np.fromiter(
            map(self._item_row.get, item_ids, repeat(-1)), dtype=np.int64, count=len(item_ids)
        )

    def _plays(self, user_id: str) -> int:
        return self._plays_by_user.get(user_id, 0)

    def generate(
        self,
        user_id: str,
        now: datetime | None = None,
        listener: Listener | None = None,
        heard: set[str] | None = None,
        k: int | None = None,
    ) -> list[Candidate]:
        """Candidates for one request, filtered (heard, market, explicit for minors) and merged."""
        listener = listener or self.listener(user_id)
        now = now or datetime.now(UTC)
        heard = set(heard or ()) | self.recent.get(user_id, set())
        ranked = self.sources(listener, now, heard)
        return merge_sources(
            ranked, self.settings.quotas, k or self.settings.total, self._admit(listener, heard)
        )

    # --- persistence ---------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write every part under `folder` (a new folder per model version)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.cf.save(folder / "cf")
        self.cf_index.save(folder / "cf_index")
        if self.cold_index is not None:
            self.cold_index.save(folder / "cold_index")
        self.content.save(folder / "content")
        self.content_index.save(folder / "content_index")
        self.popularity.save(folder / "popularity")
        if self.cold_mapper is not None:
            self.cold_mapper.save(folder / "cold_mapper")
        np.save(folder / "profiles.npy", self.profiles)
        self.listeners.to_parquet(folder / "listeners.parquet", index=False)
        recent = pd.DataFrame(
            [(u, i) for u, items in self.recent.items() for i in items],
            columns=[C.USER_ID, C.ITEM_ID],
        )
        recent.to_parquet(folder / "recent.parquet", index=False)
        meta = {
            "trained_at": self.trained_at.isoformat(),
            "settings": self.settings.model_dump(mode="json"),
            "profile_ids": self.profile_ids,
            "onboarding": self.onboarding,
            "metrics": self.metrics,
        }
        atomic_write_text(folder / "model.json", json.dumps(meta))
        return folder

    @classmethod
    def load(cls, folder: Path) -> CandidateModel:
        """Read a model written by `save`."""
        meta = json.loads((folder / "model.json").read_text())
        recent_frame = pd.read_parquet(folder / "recent.parquet")
        recent = {str(u): set(g[C.ITEM_ID]) for u, g in recent_frame.groupby(C.USER_ID)}
        return cls(
            settings=CandidateSettings.model_validate(meta["settings"]),
            trained_at=datetime.fromisoformat(meta["trained_at"]),
            cf=CollaborativeModel.load(folder / "cf"),
            cf_index=ItemIndex.load(folder / "cf_index"),
            cold_index=ItemIndex.load(folder / "cold_index")
            if (folder / "cold_index").exists()
            else None,
            content=ContentModel.load(folder / "content"),
            content_index=ItemIndex.load(folder / "content_index"),
            profile_ids=list(meta["profile_ids"]),
            profiles=np.load(folder / "profiles.npy"),
            popularity=PopularityTables.load(folder / "popularity"),
            cold_mapper=ColdStartMapper.load(folder / "cold_mapper")
            if (folder / "cold_mapper").exists()
            else None,
            listeners=pd.read_parquet(folder / "listeners.parquet"),
            onboarding={k: list(v) for k, v in meta["onboarding"].items()},
            recent=recent,
            metrics=dict(meta["metrics"]),
        )


def train_candidates(
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    onboarding: pd.DataFrame,
    settings: CandidateSettings,
    seed: int,
    now: datetime | None = None,
    exclude_users: set[str] | frozenset[str] = frozenset(),
) -> CandidateModel:
    """Train every source on events before `now` (default: the last event)."""
    now = now or pd.Timestamp(events[C.TS].max()).to_pydatetime()
    events = events[events[C.TS] <= now]
    items = items.drop_duplicates(C.ITEM_ID, keep="last").reset_index(drop=True)
    human = events[~events[C.USER_ID].isin(exclude_users)] if exclude_users else events

    cf = fit_als(interaction_weights(human, items, settings.weights), settings.als, seed)
    content = ContentModel.fit(items, settings.content_dim, seed)
    item_ids = items[C.ITEM_ID].astype(str).tolist()
    content_vectors = content.transform(items)

    # New items (no collaborative factors yet) get factors mapped from their content.
    warm_rows = pd.Index(item_ids).get_indexer(pd.Index(cf.item_ids))
    cold_mask = np.ones(len(item_ids), dtype=bool)
    cold_mask[warm_rows[warm_rows >= 0]] = False
    mapper: ColdStartMapper | None = None
    vectors = [cf.item_factors]
    ids = list(cf.item_ids)
    cold_ids = [item_ids[i] for i in np.flatnonzero(cold_mask)]
    if cold_ids and len(cf.item_ids) >= 10:
        mapper = ColdStartMapper.fit(
            content_vectors[warm_rows[warm_rows >= 0]],
            cf.item_factors[warm_rows >= 0],
            settings.cold_start_alpha,
            seed=seed,
        )
        mapped = mapper.predict(content_vectors[cold_mask], match_norm=True)
        vectors.append(mapped.astype(np.float32))
        ids += cold_ids
    cf_index = build_index(ids, np.vstack(vectors), settings.index, seed)
    cold_index = (
        build_index(cold_ids, vectors[-1], settings.index, seed) if mapper is not None else None
    )
    content_index = build_index(item_ids, content_vectors, settings.index, seed)
    profile_ids, profiles = content_profiles(
        human, item_ids, content_vectors, now, settings.profile_half_life_days
    )
    popularity = PopularityTables.fit(
        events,
        users,
        items,
        now,
        window_days=settings.popularity_window_days,
        exclude_users=exclude_users,
        half_life_days=settings.popularity_half_life_days,
        min_plays=settings.popularity_min_plays,
    )

    plays = events.groupby(C.USER_ID).size().rename("plays")
    listeners = (
        users.drop_duplicates(C.USER_ID, keep="last")[[C.USER_ID, C.COUNTRY, C.AGE_BUCKET, C.TIER]]
        .merge(plays, how="left", left_on=C.USER_ID, right_index=True)
        .fillna({"plays": 0})
        .astype({"plays": np.int64})
    )
    picks = (
        {str(u): list(g[C.ARTIST_ID]) for u, g in onboarding.groupby(C.USER_ID)}
        if len(onboarding)
        else {}
    )
    since = now - timedelta(days=settings.exclude_heard_days)
    recent_events = events[events[C.TS] >= since]
    recent = {str(u): set(g[C.ITEM_ID]) for u, g in recent_events.groupby(C.USER_ID)}
    metrics: dict[str, float] = {
        "cf_users": len(cf.user_ids),
        "cf_items": len(cf.item_ids),
        "cold_items": len(cold_ids),
    }
    if mapper is not None:
        metrics.update({f"cold_start_{k}": float(v) for k, v in mapper.quality().items()})
    return CandidateModel(
        settings=settings,
        trained_at=now,
        cf=cf,
        cf_index=cf_index,
        cold_index=cold_index,
        content=content,
        content_index=content_index,
        profile_ids=profile_ids,
        profiles=profiles,
        popularity=popularity,
        cold_mapper=mapper,
        listeners=listeners,
        onboarding=picks,
        recent=recent,
        metrics=metrics,
    )
