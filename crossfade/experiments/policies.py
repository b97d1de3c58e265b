"""Policies an online experiment compares: anything that turns listeners and a time into slates.

Built in: popularity (chart order), the candidate model (merged retrieval order), the full
serving pipeline of a model version (`PipelinePolicy`), and a planted-effect wrapper that
re-orders a share of another policy's requests by the simulator's true affinity (a known,
real improvement, for power checks). Loading registered versions lives in
`flows/experiment.py`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from crossfade.candidates.model import CandidateModel
from crossfade.data.simulator.clients import listener_context
from crossfade.data.simulator.world import World

# A simple serving cost model (USD): a fixed cost per request plus a cost per item scored.
COST_PER_REQUEST_USD = 2e-6
COST_PER_SCORED_ITEM_USD = 5e-8


@dataclass(frozen=True)
class Slate:
    """What one request returned: ranked item ids, its serving cost and whether it failed."""

    item_ids: list[str]
    cost_usd: float
    error: bool = False


class Policy(Protocol):
    """Listeners and a request time in, one slate per listener out."""

    name: str

    def recommend(self, user_ids: Sequence[str], at: datetime, k: int) -> list[Slate]:
        """One slate of up to `k` items per listener."""
        ...


def _cost(scored: int) -> float:
    return COST_PER_REQUEST_USD + COST_PER_SCORED_ITEM_USD * scored


@dataclass
class PopularityPolicy:
    """The same chart for everyone: items by popularity score, highest first."""

    item_ids: list[str]
    scores: np.ndarray
    name: str = "popularity"

    @classmethod
    def from_world(cls, world: World) -> PopularityPolicy:
        """Chart from the catalogue's popularity (what a public chart would show)."""
        cat = world.catalogue
        return cls([str(i) for i in cat.item_ids], np.asarray(cat.item_popularity, float))

    def recommend(self, user_ids: Sequence[str], at: datetime, k: int) -> list[Slate]:
        """The top `k` of the chart for every listener."""
        top = np.argsort(-self.scores, kind="stable")[:k]
        items = [self.item_ids[i] for i in top]
        return [Slate(list(items), _cost(0)) for _ in user_ids]


@dataclass
class CandidatePolicy:
    """The candidate model's merged retrieval order, no ranker."""

    model: CandidateModel
    name: str = "candidates"

    def recommend(self, user_ids: Sequence[str], at: datetime, k: int) -> list[Slate]:
        """Top `k` candidates per listener; a failing request is an error with an empty slate."""
        out = []
        for user in user_ids:
            try:
                found = self.model.generate(user, now=at, k=k)
                out.append(Slate([c.item_id for c in found], _cost(len(found))))
            except (KeyError, ValueError):
                out.append(Slate([], _cost(0), error=True))
        return out


@dataclass
class PlantedEffectPolicy:
    """Wraps a policy; for a `share` of requests (hashed per listener and day) the slate is the
    base policy's slate re-ordered by the listener's true affinity (same items, better order;
    with `pool` > k the top `k` of a larger pool)."""

    base: Policy
    world: World
    share: float
    pool: int | None = None
    name: str = "planted"

    def _treated(self, user: str, at: datetime) -> bool:
        digest = hashlib.sha256(f"planted:{user}:{at.date().isoformat()}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < self.share

    def recommend(self, user_ids: Sequence[str], at: datetime, k: int) -> list[Slate]:
        """Base slates, with the planted re-ordering for the treated share of requests."""
        slates = self.base.recommend(user_ids, at, self.pool or k)
        out = []
        for user, slate in zip(user_ids, slates, strict=True):
            if slate.error or not slate.item_ids or not self._treated(user, at):
                out.append(Slate(slate.item_ids[:k], slate.cost_usd, slate.error))
                continue
            truth = self.world.true_affinity(user, slate.item_ids)
            order = np.argsort(-truth, kind="stable")[:k]
            out.append(Slate([slate.item_ids[i] for i in order], slate.cost_usd))
        return out


class _Recommender(Protocol):
    def recommend(self, request: Any) -> Any: ...


@dataclass
class PipelinePolicy:
    """The full serving stack (candidates, ranker, re-ranker, fallbacks) of one model version,
    asked exactly as a listener's app asks it: one `/recommend`-shaped request per listener,
    with the listener's device, platform, market and time zone from the simulated world."""

    pipeline: _Recommender
    world: World
    name: str = "pipeline"
    shelf: str = "home"

    def recommend(self, user_ids: Sequence[str], at: datetime, k: int) -> list[Slate]:
        """One served slate per listener; a request that fails is an error with no items."""
        from crossfade.serving.api import RecommendRequest

        index = self.world.user_index(list(user_ids))
        out = []
        for user, u in zip(user_ids, index, strict=True):
            body = {
                "listener_id": user,
                "context": listener_context(self.world, int(u), at),
                "shelf": self.shelf,
                "k": k,
            }
            # parsed from JSON as the service parses it (strict models take ISO strings there)
            request = RecommendRequest.model_validate_json(json.dumps(body))
            try:
                answer = self.pipeline.recommend(request)
            except Exception:  # the service would answer 5xx: an error, not a crash
                out.append(Slate([], _cost(0), error=True))
                continue
            items = [str(item["item_id"]) for item in answer.items]
            out.append(Slate(items, _cost(len(items)), error=False))
        return out
