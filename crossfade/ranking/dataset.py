"""Ranker training data: logged impressions with graded outcomes, and their features.

On the simulated world the "log" comes from the simulator's response model: for each
(listener, request time) the candidate model retrieves candidates, a randomised policy shows
a slate of them (uniformly shuffled, so labels are not biased by a previous ranker's order),
and `World.respond` says what the listener did with each shown item. Every shown item that
the listener reached becomes a row; its label is the policy's grade of what happened.

Features are computed from the candidate model, so the same function serves training and
serving: collaborative score, content similarity, source, popularity, freshness, artist and
genre affinity from the listener's history, duration, episode flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.candidates.generator import SOURCES, Candidate
from crossfade.candidates.model import CandidateModel
from crossfade.ranking.labels import LABEL, LabelPolicy

REQUEST = "request_id"
FEATURES: tuple[str, ...] = (
    "cf_score",
    "content_sim",
    "source_score",
    "n_sources",
    *(f"src_{s}" for s in SOURCES),
    "popularity",
    "days_since_release",
    "duration_min",
    "is_episode",
    "artist_affinity",
    "genre_affinity",
    "user_plays",
)


@dataclass
class History:
    """What each listener played before the request time (for affinity features)."""

    artist_share: dict[str, dict[str, float]]
    genre_share: dict[str, dict[str, float]]
    plays: dict[str, int]

    @classmethod
    def from_events(cls, events: pd.DataFrame, items: pd.DataFrame) -> History:
        """Shares of plays per artist and genre for every listener."""
        meta = items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)
        frame = events[[C.USER_ID, C.ITEM_ID]].copy()
        frame[C.ARTIST_ID] = frame[C.ITEM_ID].map(meta[C.ARTIST_ID])
        frame[C.GENRE] = frame[C.ITEM_ID].map(meta[C.GENRE])
        plays = frame.groupby(C.USER_ID).size()

        def shares(column: str) -> dict[str, dict[str, float]]:
            counts = frame.groupby([C.USER_ID, column]).size()
            share = counts / counts.groupby(level=0).transform("sum")
            out: dict[str, dict[str, float]] = {}
            flat = share.reset_index(name="share")
            for user, key, value in flat.itertuples(index=False, name=None):
                out.setdefault(str(user), {})[str(key)] = float(value)
            return out

        return cls(shares(C.ARTIST_ID), shares(C.GENRE), {str(u): int(n) for u, n in plays.items()})


def candidate_features(
    model: CandidateModel,
    user_id: str,
    candidates: Sequence[Candidate],
    items: pd.DataFrame,
    history: History,
    now: datetime,
) -> pd.DataFrame:
    """One row of ranker features per candidate of one request."""
    ids = [c.item_id for c in candidates]
    meta = items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID).reindex(ids)
    frame = pd.DataFrame({C.ITEM_ID: ids})
    frame["cf_score"] = np.nan_to_num(model.cf.score(user_id, ids), nan=0.0)
    # Content vectors come from the model's index: no re-embedding per request.
    frame["content_sim"] = model.content_similarity(user_id, ids)
    frame["source_score"] = [c.score for c in candidates]
    frame["n_sources"] = [len(c.sources) for c in candidates]
    for source in SOURCES:
        frame[f"src_{source}"] = [float(source in c.sources) for c in candidates]
    frame["popularity"] = model.popularity_share(ids)
    release = pd.to_datetime(meta[C.RELEASE_DATE]).dt.tz_localize("UTC")
    frame["days_since_release"] = ((pd.Timestamp(now) - release).dt.days.fillna(365)).to_numpy()
    frame["duration_min"] = (meta[C.DURATION_MS].fillna(210_000) / 60_000).to_numpy()
    frame["is_episode"] = (meta[C.CONTENT_TYPE] == "episode").astype(float).to_numpy()
    artists = history.artist_share.get(user_id, {})
    genres = history.genre_share.get(user_id, {})
    frame["artist_affinity"] = [artists.get(str(a), 0.0) for a in meta[C.ARTIST_ID]]
    frame["genre_affinity"] = [genres.get(str(g), 0.0) for g in meta[C.GENRE]]
    frame["user_plays"] = float(history.plays.get(user_id, 0))
    return frame


def simulated_impressions(
    model: CandidateModel,
    world: object,
    items: pd.DataFrame,
    history: History,
    users: Sequence[str],
    start: datetime,
    days: int,
    policy: LabelPolicy,
    seed: int,
    slate: int = 20,
    pool: int = 100,
) -> pd.DataFrame:
    """Labelled rows from shown slates: one request per listener per day from `start`."""
    rng = np.random.default_rng(seed)
    frames = []
    request = 0
    for day in range(days):
        for user in users:
            at = start + timedelta(days=day, hours=float(rng.uniform(8, 22)))
            found = model.generate(user, now=at, k=pool)
            if len(found) < 2:
                continue
            shown = [found[i] for i in rng.permutation(len(found))[:slate]]
            events = world.respond(user, [c.item_id for c in shown], at, rng).to_pandas()  # type: ignore[attr-defined]
            if events.empty:
                continue
            events = events.drop_duplicates(C.ITEM_ID)
            grades = pd.Series(policy.grade(events), index=events[C.ITEM_ID].to_numpy())
            feats = candidate_features(model, user, shown, items, history, at)
            feats = feats[feats[C.ITEM_ID].isin(grades.index)].copy()
            feats[LABEL] = feats[C.ITEM_ID].map(grades).astype(int)
            feats[REQUEST] = request
            feats[C.USER_ID] = user
            feats[C.TS] = at
            frames.append(feats)
            request += 1
    if not frames:
        raise ValueError("no impressions were produced: no listener reached any shown item")
    return pd.concat(frames, ignore_index=True)
