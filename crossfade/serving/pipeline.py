"""The recommendation pipeline: one request in, a safe, explained shelf out.

Stages, each timed against its budget (`serving.budgets_ms`):

1. `features`: the listener's online features, freshness-checked (`OnlineFeatures.user`);
   missing or stale values are the catalogue's documented defaults, counted.
2. `candidates`: every retrieval source of the candidate model, filtered and merged.
3. `item_features`: the candidates' item features from the in-process cache (filled by
   `warm()` at load time, once per materialization, never on the request path).
4. `ranker`: the listener's tier booster over the ranker inputs
   (`crossfade.ranking.features`: the same assembly as in training).
5. `rerank`: diversity, artist cap, freshness, long tail, fairness, safety.

The request path holds no pandas: the ranker inputs come from `serving.fast_inputs` and the
rules from `serving.fast_rerank`, array twins of the training-time definitions that give the
same answers (`tests/unit/test_serving_fast_path.py`). `fast=False` answers through the
pandas definitions themselves (`serving.reference`), for those tests and the benchmark.

Fallbacks (named in `crossfade.serving.fallbacks`, reported in every response): a failed or
missing model answers with what is popular in the listener's market for their cohort; an
erased listener (`safety.erased`) whom the loaded models still hold is answered popular in the
request's market with nothing of theirs (no features, history, age or tier), until a model
trained without them is loaded; a
stage that ends past its budget stops the pipeline there and the best answer so far is
served (candidate order, or ranked order without re-ranking). Budgets are checked when a
stage ends: Python cannot pre-empt a running stage. Whatever the path, the response passes
the age and market safety check (`crossfade.reranking.safety`): minors never get explicit
items and nothing unplayable in the market is shown.

Listener ids here are the stores' ids (keyed pseudonyms by default): the recommender service
pseudonymizes the account id a client sends at its edge (`safety.privacy.edge_pseudonymizer`)
before the pipeline, the logs or an error message see it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import ValidationError

from crossfade import columns as C
from crossfade.candidates.generator import Candidate, Listener
from crossfade.candidates.model import CandidateModel
from crossfade.data import domains as D
from crossfade.features import catalog
from crossfade.features.online import FeatureVector, ItemFeatures, OnlineFeatures
from crossfade.features.policy import FeaturePolicy
from crossfade.ranking import features as RF
from crossfade.ranking.compiled import CompiledForest
from crossfade.ranking.dataset import History
from crossfade.ranking.ranker import RankerModel
from crossfade.reranking import RequestContext as RerankContext
from crossfade.reranking import Reranker, RerankResult
from crossfade.reranking.safety import is_minor
from crossfade.serving import fallbacks as F
from crossfade.serving import reference
from crossfade.serving.api import RecommendRequest, RequestContext
from crossfade.serving.catalog import ServingCatalog, country_column, epoch_day, market_of
from crossfade.serving.fast_inputs import RankerInputs
from crossfade.serving.fast_rerank import FastReranker, RerankInput, label_codes
from crossfade.serving.reasons import reasons_for

DISCOVERY_SOURCES = frozenset({"collaborative", "content", "cold_start", "fresh_releases"})


class PipelineError(ValueError):
    """The pipeline cannot be built from these parts; the message names the part."""


@dataclass(frozen=True)
class ModelSet:
    """The loaded models of one slot and the registry versions they came from."""

    candidates: CandidateModel
    ranker: RankerModel | None
    candidates_version: str
    ranker_version: str


@dataclass
class Recommendation:
    """One answer: ordered items with scores, sources, reasons; what fell back; stage times."""

    listener_id: str
    shelf: str
    items: list[dict[str, Any]]
    fallbacks: list[str]
    stage_ms: dict[str, float]
    candidates_version: str
    ranker_version: str
    stale: Counter[str] = field(default_factory=Counter)

    def response(self, slot: str) -> dict[str, Any]:
        """The JSON body of the serving contract."""
        return {
            "listener_id": self.listener_id,
            "shelf": self.shelf,
            "slot": slot,
            "model": {"candidates": self.candidates_version, "ranker": self.ranker_version},
            "items": self.items,
            "fallbacks": self.fallbacks,
            "stage_ms": self.stage_ms,
        }


class _Run:
    """Per-request bookkeeping: stage timings, fallbacks, whether a budget was exceeded."""

    def __init__(self, clock: Callable[[], float], budgets_ms: Mapping[str, float]) -> None:
        self.clock = clock
        self.budgets_ms = budgets_ms
        self.stage_ms: dict[str, float] = {}
        self.fallbacks: list[str] = []
        self.late = False
        self.stale: Counter[str] = Counter()

    def fallback(self, name: str) -> None:
        if name not in self.fallbacks:
            self.fallbacks.append(name)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            ms = (self.clock() - start) * 1000.0
            self.stage_ms[name] = round(ms, 3)
            if ms > self.budgets_ms[name]:
                self.fallback(F.over_budget(name))
                self.late = True


@dataclass
class _Ranked:
    """A ranked list of the request's candidates (best first) and where each came from."""

    ids: list[str]
    scores: np.ndarray
    sources: list[str]
    all_sources: list[list[str]]
    rows: np.ndarray  # catalogue row of each item (-1: not in the catalogue)
    extra: dict[str, list[str]] = field(default_factory=dict)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RecommendationPipeline:
    """Built once per model load from loaded objects; `recommend` is thread-safe."""

    def __init__(
        self,
        models: ModelSet,
        features: OnlineFeatures | None,
        reranker: Reranker,
        budgets_ms: Mapping[str, float],
        *,
        rerank_depth: int = 60,
        history: History | None = None,
        policy: FeaturePolicy | None = None,
        artist_names: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = _utcnow,
        fast: bool = True,
        compiled: Mapping[str, CompiledForest] | None = None,
        erased: Container[str] | None = None,
    ) -> None:
        unknown = sorted(set(budgets_ms) - set(F.STAGES))
        absent = sorted(set(F.STAGES) - set(budgets_ms))
        if unknown or absent:
            raise PipelineError(
                f"serving.budgets_ms must name exactly the stages {', '.join(F.STAGES)}; "
                f"unknown: {unknown or 'none'}, missing: {absent or 'none'}"
            )
        ranker = models.ranker
        if ranker is not None and list(ranker.features) != list(RF.FEATURES):
            extra = sorted(set(ranker.features) - set(RF.FEATURES))
            lacking = sorted(set(RF.FEATURES) - set(ranker.features))
            raise PipelineError(
                f"ranker version {models.ranker_version} was trained on other inputs than this "
                f"code assembles (it expects {extra or 'no'} extra and lacks {lacking or 'no'} "
                "features, or a different order): retrain it or load a compatible version"
            )
        self.models = models
        self.features = features
        self.reranker = reranker
        self.budgets_ms = dict(budgets_ms)
        self.rerank_depth = rerank_depth
        self.history = history or History({})
        self.policy = policy
        self.clock = clock
        self.now = now
        model = models.candidates
        self.catalog = ServingCatalog.from_model(model, artist_names)
        self.fast = fast
        self.inputs = RankerInputs(self.catalog, model, self.history, policy)
        self.fast_reranker = FastReranker(reranker)
        # the ranker's trees as native code per tier (ranking.compiled); LightGBM otherwise
        self.compiled = dict(compiled or {})
        self._known: dict[str, tuple[str, str]] = {
            str(u): (str(a), str(t))
            for u, a, t in zip(
                model.listeners[C.USER_ID], model.listeners[C.AGE_BUCKET],
                model.listeners[C.TIER], strict=True,
            )
        }  # fmt: skip
        self._rerank_lock = threading.Lock()
        self.fresh_release_days = model.settings.fresh_release_days
        # erased listeners (safety.erased) are ignored while these models hold their data
        self.erased = erased
        self._held = (
            frozenset(self._known)
            | frozenset(map(str, model.profile_ids))
            | frozenset(map(str, model.recent))
            | frozenset(map(str, model.cf.user_ids))
            | frozenset(map(str, self.history.artist_share))
        )

    def warm(self) -> str | None:
        """Fill the item-feature cache now (load time), so no request pays the bulk read."""
        return self.features.warm() if self.features is not None else None

    def warm_up(self, listeners_to_answer: int = 8) -> None:
        """Answer a few known listeners on both shelves now (load time), before the pipeline
        takes traffic, so no listener pays a cold path (first model calls, index pages read
        from disk). Their exposure counts toward the creator-fairness tracker like any
        request's: a handful against the thousands a slot serves."""
        listeners = self.models.candidates.listeners.head(listeners_to_answer)
        stamp = self.now().replace(microsecond=0)
        for user_id, country in zip(listeners[C.USER_ID], listeners[C.COUNTRY], strict=True):
            try:
                context = RequestContext(
                    device="mobile", platform="android", country=str(country), timezone="UTC",
                    timestamp=stamp,
                )  # fmt: skip
                for shelf in ("home", "discover_weekly"):
                    self.recommend(
                        RecommendRequest(
                            listener_id=str(user_id), context=context, shelf=shelf, k=10
                        )
                    )
            except ValidationError:  # an imported id or market the API would refuse
                continue

    def is_erased(self, listener_id: str) -> bool:
        """Whether this listener was erased and the loaded models still hold their data."""
        return self.erased is not None and listener_id in self._held and listener_id in self.erased

    # --- stages ------------------------------------------------------------------------
    def _user(self, user_id: str, now: datetime, run: _Run) -> FeatureVector:
        if self.features is None:
            run.fallback(F.FEATURES_UNAVAILABLE)
            run.stale["user_missing"] += 1
            return FeatureVector(dict(catalog.defaults(catalog.USER_VIEW)), None, missing=True)
        vector = self.features.user(user_id, now)
        if vector.missing:
            run.fallback(F.USER_FEATURES_MISSING)
            run.stale["user_missing"] += 1
        elif vector.stale:
            run.fallback(F.USER_FEATURES_STALE)
            run.stale["user_stale"] += 1
        return vector

    def _listener(self, user_id: str, market: str, vector: FeatureVector) -> Listener:
        """Age and tier: the online values when served fresh, else the training-time facts,
        else the safe defaults (unknown age counts as a minor)."""
        age, tier = self._known.get(user_id, (D.UNKNOWN, "ad_supported"))
        if not vector.defaulted:
            if "user_age_bucket" not in vector.withheld:
                age = str(vector.values.get("user_age_bucket", age))
            tier = str(vector.values.get("user_tier", tier))
        return Listener(user_id, market, age, tier)

    def _candidates(self, listener: Listener, now: datetime, shelf: str) -> list[Candidate]:
        model = self.models.candidates
        found = model.generate(listener.user_id, now=now, listener=listener)
        if shelf == "discover_weekly":  # music discovery: personal and new, no podcasts
            rows = self.inputs.rows(found)
            episode = self.catalog.is_episode[np.maximum(rows, 0)] & (rows >= 0)
            found = [
                c
                for c, ep in zip(found, episode, strict=True)
                if not ep and DISCOVERY_SOURCES.intersection(c.sources)
            ]
        return found

    def _item_features(
        self, ids: list[str], rows: np.ndarray, now: datetime, run: _Run
    ) -> ItemFeatures:
        if self.features is None:
            run.stale["item_missing"] += len(ids)
            run.fallback(F.ITEM_FEATURES_DEFAULTED)
            specs = catalog.view_features(catalog.ITEM_VIEW)
            columns: dict[str, np.ndarray] = {}
            for spec in specs:
                if spec.dtype == "float32_list":
                    columns[spec.name] = np.tile(
                        np.asarray(spec.default, dtype=np.float32), (len(ids), 1)
                    )
                else:
                    columns[spec.name] = np.array([spec.default] * len(ids), dtype=object)
            return ItemFeatures(list(ids), columns, len(ids), 0, "none")
        batch = self.features.items(ids, now, rows=rows, universe=self.catalog.item_ids)
        if batch.missing or batch.stale:
            run.fallback(F.ITEM_FEATURES_DEFAULTED)
            run.stale["item_missing"] += batch.missing
            run.stale["item_stale"] += batch.stale
        return batch

    def _rank(
        self,
        request: RecommendRequest,
        listener: Listener,
        found: list[Candidate],
        vector: FeatureVector,
        batch: ItemFeatures,
    ) -> np.ndarray:
        ranker = self.models.ranker
        assert ranker is not None
        if self.fast:
            matrix = self.inputs.matrix(listener.user_id, found, vector, batch, request.context)
        else:
            matrix = reference.ranker_matrix(
                self.models.candidates, self.catalog, self.history, self.policy,
                listener.user_id, found, vector, batch, request.context,
            )  # fmt: skip
        tier = listener.tier if listener.tier in ranker.boosters else next(iter(ranker.boosters))
        forest = self.compiled.get(tier)
        if forest is not None:
            return forest.predict(matrix)
        booster = ranker.boosters[tier]
        best = ranker.best_iterations.get(tier) or None
        return np.asarray(booster.predict(matrix, num_iteration=best, num_threads=1))

    def _rerank(
        self,
        ranked: _Ranked,
        batch: ItemFeatures | None,
        top: np.ndarray,
        listener: Listener,
        now: datetime,
        k: int,
    ) -> RerankResult:
        """The configured re-ranking rules over the top ranked candidates."""
        ids = [ranked.ids[i] for i in top]
        genres = (
            np.asarray(batch.columns["item_genre"], dtype=object)[top]
            if batch is not None
            else None
        )
        context = RerankContext(listener.country, listener.age_bucket, now)
        if not self.fast:
            frame = reference.rerank_frame(self.catalog, ids, ranked.scores[top], genres)
            with self._rerank_lock:
                return self.reranker.rerank(frame, context, k)
        cat = self.catalog
        rows = ranked.rows[top]
        known = rows >= 0
        safe = np.maximum(rows, 0)
        data = RerankInput(
            item_ids=ids,
            scores=np.asarray(ranked.scores[top], dtype=np.float64),
            artist_keys=[str(a) for a in cat.artist_ids[safe]],
            artist_codes=cat.artist_codes[safe],
            genre_codes=label_codes(genres if genres is not None else [D.UNKNOWN] * len(ids)),
            explicit=np.where(known, cat.explicit[safe], True),
            play_share_above=np.where(known, cat.play_share_above[safe], 1.0),
            release_day=cat.release_day[safe].astype(np.float64),
            available=known & cat.shown_in[safe, country_column(listener.country)],
        )
        with self._rerank_lock:
            return self.fast_reranker.rerank(data, context, k)

    # --- answers -----------------------------------------------------------------------
    def _popular(self, listener: Listener, k: int, shelf: str, run: _Run) -> _Ranked:
        """Popular in the listener's market for their cohort (country, age bucket, tier)."""
        run.fallback(F.POPULAR_IN_COHORT)
        tables = self.models.candidates.popularity
        ids, scores = tables.cohort(listener.country, listener.age_bucket, listener.tier, k * 4)
        rows = self.catalog.rows(ids)
        keep = np.ones(len(ids), dtype=bool)
        if shelf == "discover_weekly":
            keep &= ~self.catalog.is_episode[np.maximum(rows, 0)]
        ids = [i for i, ok in zip(ids, keep, strict=True) if ok]
        scores, rows = np.asarray(scores)[keep], rows[keep]
        reason = f"popular with listeners like you in {listener.country}"
        return _Ranked(
            list(ids),
            scores,
            ["popular_in_cohort"] * len(ids),
            [["popular_in_cohort"]] * len(ids),
            rows,
            {i: [reason] for i in ids},
        )

    def _finish(
        self,
        request: RecommendRequest,
        listener: Listener,
        ranked: _Ranked,
        order: Sequence[int] | np.ndarray,
        run: _Run,
        today: int,
    ) -> Recommendation:
        """The top k of `order` that pass the safety check, with their reasons."""
        k = request.k
        minor = is_minor(listener.age_bucket)
        order = np.asarray(order, dtype=np.int64)
        ok = self.catalog.safe_mask(ranked.rows[order], listener.country, minor)
        picked = [int(order[j]) for j in np.flatnonzero(ok)[: k * 2]]
        # and what the re-ranker's safety filter keeps (it reads the markets string)
        picked_ids = [ranked.ids[i] for i in picked]
        if self.fast:
            shown = self.catalog.shown_mask(ranked.rows[picked], listener.country, minor)
        else:
            shown = reference.shown_mask(
                self.catalog, picked_ids, listener.country, listener.age_bucket
            )
        final = [i for i, keep in zip(picked, shown, strict=True) if keep][:k]
        erased = F.LISTENER_ERASED in run.fallbacks
        played = {} if erased else self.history.artist_share.get(listener.user_id, {})
        items = []
        for i in final:
            item_id = ranked.ids[i]
            row = int(ranked.rows[i])
            artist = str(self.catalog.artist_ids[row])
            items.append(
                {
                    "item_id": item_id,
                    "score": round(float(ranked.scores[i]), 6),
                    "source": ranked.sources[i],
                    "reasons": reasons_for(
                        ranked.all_sources[i],
                        artist_label=self.catalog.artist_label(artist),
                        played_artist=artist in played,
                        market=listener.country,
                        days_since_release=today - int(self.catalog.release_day[row]),
                        fresh_release_days=self.fresh_release_days,
                        extra=ranked.extra.get(item_id, []),
                    ),
                }
            )
        return Recommendation(
            request.listener_id,
            request.shelf,
            items,
            run.fallbacks,
            run.stage_ms,
            self.models.candidates_version,
            self.models.ranker_version,
            run.stale,
        )

    def recommend(self, request: RecommendRequest) -> Recommendation:
        """Answer one request; never raises for a valid request (fallbacks instead)."""
        run = _Run(self.clock, self.budgets_ms)
        now = self.now()
        today = epoch_day(now)
        market = market_of(request.context.country)
        if self.is_erased(request.listener_id):
            run.fallback(F.LISTENER_ERASED)
            anyone = Listener(request.listener_id, market)  # request facts only: minor-safe
            ranked = self._popular(anyone, request.k, request.shelf, run)
            return self._finish(request, anyone, ranked, range(len(ranked.ids)), run, today)
        with run.stage("features"):
            vector = self._user(request.listener_id, now, run)
        listener = self._listener(request.listener_id, market, vector)

        def popular() -> Recommendation:
            ranked = self._popular(listener, request.k, request.shelf, run)
            return self._finish(request, listener, ranked, range(len(ranked.ids)), run, today)

        try:
            with run.stage("candidates"):
                found = self._candidates(listener, now, request.shelf)
        except Exception:
            run.fallback(F.CANDIDATES_FAILED)
            return popular()
        if not found:
            return popular()
        ranked = _Ranked(
            [c.item_id for c in found],
            np.array([c.score for c in found], dtype=np.float64),
            [c.source for c in found],
            [list(c.sources) for c in found],
            self.inputs.rows(found),
        )
        fused = np.arange(len(found))  # merge order: reciprocal-rank fusion of the sources
        if run.late:
            return self._finish(request, listener, ranked, fused, run, today)
        if self.models.ranker is None:
            run.fallback(F.RANKER_MISSING)
            return popular()
        with run.stage("item_features"):
            batch = self._item_features(ranked.ids, ranked.rows, now, run)
        if run.late:
            return self._finish(request, listener, ranked, fused, run, today)
        try:
            with run.stage("ranker"):
                ranked.scores = self._rank(request, listener, found, vector, batch)
        except Exception:
            run.fallback(F.RANKER_FAILED)
            return popular()
        order = np.lexsort((np.arange(len(found)), -ranked.scores))
        if run.late:
            return self._finish(request, listener, ranked, order, run, today)
        try:
            with run.stage("rerank"):
                top = order[: max(self.rerank_depth, request.k)]
                result = self._rerank(ranked, batch, top, listener, now, request.k)
        except Exception:
            run.fallback(F.RERANK_FAILED)
            return self._finish(request, listener, ranked, order, run, today)
        position = {item: i for i, item in enumerate(ranked.ids)}
        for item, tags in result.reasons.items():
            if item in position and tags:
                ranked.extra.setdefault(item, []).extend(f"reranked: {t}" for t in tags)
        reranked = [position[i] for i in result.item_ids if i in position]
        return self._finish(request, listener, ranked, reranked, run, today)
