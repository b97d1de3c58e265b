"""Ranker training data: logged impressions with graded outcomes, and their features.

On the simulated world the "log" comes from the simulator's response model: for each
(listener, request time) the candidate model retrieves candidates, a randomised policy shows
a slate of them (uniformly shuffled, so labels are not biased by a previous ranker's order),
and `World.respond` says what the listener did with each shown item. Every shown item that
the listener reached becomes a row; its label is the policy's grade of what happened.

Listener ids are the stores' (pseudonyms by default): `world` must be the listener view of
the simulated world (`crossfade.safety.privacy.listener_view`), which answers to them.

Each row carries the candidate model's crosses (`candidate_features`: the same function
serves training and serving) and the request inputs of the `request_context` view (request
time, the listener's UTC offset, device and platform). Listener and item features are joined
later from the feature store, as of the request time (`crossfade.ranking.features`).
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
from crossfade.ranking.features import REQUEST_DEVICE, REQUEST_PLATFORM, REQUEST_TS, UTC_OFFSET
from crossfade.ranking.labels import LABEL, LabelPolicy

REQUEST = "request_id"


@dataclass
class History:
    """What each listener played before the request time (for the artist-affinity cross)."""

    artist_share: dict[str, dict[str, float]]

    @classmethod
    def from_events(cls, events: pd.DataFrame, items: pd.DataFrame) -> History:
        """Share of each listener's plays per artist."""
        meta = items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)
        frame = events[[C.USER_ID, C.ITEM_ID]].copy()
        frame[C.ARTIST_ID] = frame[C.ITEM_ID].map(meta[C.ARTIST_ID])
        counts = frame.groupby([C.USER_ID, C.ARTIST_ID]).size()
        share = counts / counts.groupby(level=0).transform("sum")
        out: dict[str, dict[str, float]] = {}
        for user, key, value in share.reset_index(name="share").itertuples(index=False, name=None):
            out.setdefault(str(user), {})[str(key)] = float(value)
        return cls(out)


def candidate_features(
    model: CandidateModel,
    user_id: str,
    candidates: Sequence[Candidate],
    items: pd.DataFrame,
    history: History,
) -> pd.DataFrame:
    """The candidate model's crosses (`CANDIDATE_CROSSES`), one row per candidate.

    Listener, item and context features are not computed here: they come from the feature
    store (point-in-time joins in training, the online store in serving).
    """
    ids = [c.item_id for c in candidates]
    artists = items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)[C.ARTIST_ID].reindex(ids)
    frame = pd.DataFrame({C.ITEM_ID: ids})
    frame["cf_score"] = np.nan_to_num(model.cf.score(user_id, ids), nan=0.0)
    # Content vectors come from the model's index: no re-embedding per request.
    frame["content_sim"] = model.content_similarity(user_id, ids)
    frame["source_score"] = [c.score for c in candidates]
    frame["n_sources"] = [len(c.sources) for c in candidates]
    for source in SOURCES:
        frame[f"src_{source}"] = [float(source in c.sources) for c in candidates]
    shares = history.artist_share.get(user_id, {})
    frame["artist_affinity"] = [shares.get(str(a), 0.0) for a in artists]
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
    """Labelled rows from shown slates: one request per listener per day from `start`.

    The device and platform of a request are those its events were played on, and the UTC
    offset is the listener's (a client sends both with the request).
    """
    known = set(map(str, world.listeners.user_ids))  # type: ignore[attr-defined]
    strangers = sum(1 for u in users if u not in known)
    if strangers:
        raise ValueError(
            f"{strangers} of {len(users)} listener ids are not known to the world: the lake "
            "holds pseudonyms and the world raw ids (or the reverse, or another key); pass "
            "`crossfade.safety.privacy.listener_view(settings, world)`"
        )
    rng = np.random.default_rng(seed)
    offsets = world.listeners.utc_offset  # type: ignore[attr-defined]
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
            feats = candidate_features(model, user, shown, items, history)
            feats = feats[feats[C.ITEM_ID].isin(grades.index)].copy()
            feats[LABEL] = feats[C.ITEM_ID].map(grades).astype(int)
            feats[REQUEST] = request
            feats[C.USER_ID] = user
            feats[C.TS] = at
            feats[REQUEST_TS] = at
            user_row = int(world.user_index([user])[0])  # type: ignore[attr-defined]
            feats[UTC_OFFSET] = int(offsets[user_row])
            feats[REQUEST_DEVICE] = str(events[C.DEVICE].iloc[0])
            feats[REQUEST_PLATFORM] = str(events[C.PLATFORM].iloc[0])
            frames.append(feats)
            request += 1
    if not frames:
        raise ValueError("no impressions were produced: no listener reached any shown item")
    return pd.concat(frames, ignore_index=True)
