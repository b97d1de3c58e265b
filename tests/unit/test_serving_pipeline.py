"""The recommendation pipeline on models trained on a small simulated world.

One world, one candidate model and one ranker per module (`served`); the online store is
an in-memory reader over the latest snapshot of the real feature tables, so freshness,
defaults and the item cache run exactly as in serving.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from crossfade import columns as C
from crossfade.candidates.model import CandidateModel, train_candidates
from crossfade.config import CandidateSettings, SimulatorSettings, load_settings
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.simulator import World, simulate
from crossfade.features import catalog
from crossfade.features.context import request_context
from crossfade.features.online import FeatureRead, OnlineFeatures
from crossfade.features.tables import item_features, user_features
from crossfade.ranking import features as RF
from crossfade.ranking.dataset import REQUEST, History, simulated_impressions
from crossfade.ranking.labels import LABEL, load_label_policy
from crossfade.ranking.ranker import RankerModel, fit_ranker
from crossfade.reranking import Reranker, default_reranking_path, load_reranking
from crossfade.serving import fallbacks as F
from crossfade.serving.api import RecommendRequest
from crossfade.serving.pipeline import ModelSet, PipelineError, RecommendationPipeline

WORLD = SimulatorSettings(
    users=160, days=8, artists=50, tracks=500, episodes=30, start_date=date(2026, 1, 5)
)
SEED = 11


class SnapshotReader:
    """An `OnlineReader` over the latest snapshot row per entity of the feature tables."""

    def __init__(self, tables: dict[str, pd.DataFrame], mid: str = "m1") -> None:
        self.rows: dict[str, dict[str, tuple[dict[str, Any], datetime]]] = {}
        for view, key in ((catalog.USER_VIEW, C.USER_ID), (catalog.ITEM_VIEW, C.ITEM_ID)):
            frame = (
                tables[view].sort_values(catalog.EVENT_TIMESTAMP).drop_duplicates(key, keep="last")
            )
            ts = pd.to_datetime(frame[catalog.EVENT_TIMESTAMP], utc=True)
            records = frame.drop(columns=[key]).to_dict("records")
            self.rows[view] = {
                str(k): (r, t.to_pydatetime())
                for k, r, t in zip(frame[key], records, ts, strict=True)
            }
        self.mid = mid

    def read(
        self, view: str, key_name: str, keys: Sequence[str], features: list[str]
    ) -> FeatureRead:
        table = self.rows[view]
        values: list[dict[str, Any] | None] = []
        stamps: list[datetime | None] = []
        for key in keys:
            hit = table.get(key)
            values.append(None if hit is None else {f: hit[0].get(f) for f in features})
            stamps.append(None if hit is None else hit[1])
        return FeatureRead(values, stamps)

    def materialization_id(self) -> str:
        return self.mid

    def all_keys(self, view: str, key_name: str) -> list[str]:
        return list(self.rows[view])


@dataclasses.dataclass
class Served:
    """Everything a test needs to build pipelines."""

    candidates: CandidateModel
    ranker: RankerModel
    reader: SnapshotReader
    history: History
    frames: dict[str, pd.DataFrame]
    now: datetime

    def online(self) -> OnlineFeatures:
        return OnlineFeatures(self.reader, {v: 36.0 for v in catalog_views()})

    def pipeline(self, **overrides: Any) -> RecommendationPipeline:
        settings = load_settings("local")
        models = overrides.pop("models", ModelSet(self.candidates, self.ranker, "1", "1"))
        kwargs: dict[str, Any] = {
            "history": self.history,
            "now": lambda: self.now,
            "budgets_ms": {s: 1e9 for s in F.STAGES},
        }
        kwargs.update(overrides)
        features = kwargs.pop("features", self.online())
        budgets = kwargs.pop("budgets_ms")
        reranker = Reranker(load_reranking(default_reranking_path()))
        pipe = RecommendationPipeline(
            models, features, reranker, budgets,
            rerank_depth=settings.serving.rerank_depth, **kwargs,
        )  # fmt: skip
        pipe.warm()
        return pipe


def catalog_views() -> tuple[str, ...]:
    return (catalog.USER_VIEW, catalog.ITEM_VIEW, catalog.ARTIST_VIEW)


def ranker_rows(log: pd.DataFrame, online: OnlineFeatures, tiers: pd.Series) -> pd.DataFrame:
    """The booster inputs of logged impressions, assembled exactly as serving does."""
    frames = []
    for request, group in log.groupby(REQUEST):
        at = pd.Timestamp(group[RF.REQUEST_TS].iloc[0]).to_pydatetime()
        user = str(group[C.USER_ID].iloc[0])
        ids = group[C.ITEM_ID].astype(str).tolist()
        inputs = group[list(RF.REQUEST_INPUTS)].iloc[:1].reset_index(drop=True)
        context = pd.concat([inputs, request_context(inputs)], axis=1)
        raw = RF.serving_inputs(
            group[[C.ITEM_ID, *RF.CANDIDATE_CROSSES]],
            online.user(user, now=at),
            online.items(ids, now=at),
            context,
        )
        rows = RF.model_inputs(raw)
        rows[LABEL] = group[LABEL].to_numpy()
        rows[REQUEST] = request
        rows["tier"] = tiers.get(user, "ad_supported")
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)


def build_world(
    root: Path, world: SimulatorSettings = WORLD, seed: int = SEED, rounds: int = 40
) -> Served:
    """Simulate, train candidates and a small ranker; shared by the serving tests (and, on
    the default world, by `benchmarks/serving_pipeline.py`)."""
    batch = simulate(world, seed, root / "staging", root / "truth")
    frames = {
        n: lake.read_batch_table(batch, n).to_pandas()
        for n in ("events", "items", "users", "onboarding")
    }
    truth = World.load(root / "truth" / batch.name)
    end = pd.Timestamp(frames["events"][C.TS].max()).to_pydatetime()
    cutoff = (pd.Timestamp(end).floor("D") - pd.Timedelta(days=2)).to_pydatetime()
    past = frames["events"][frames["events"][C.TS] < cutoff]
    candidates = train_candidates(
        past, frames["items"], frames["users"], frames["onboarding"],
        CandidateSettings(), seed, now=cutoff,
    )  # fmt: skip
    tables = {
        catalog.USER_VIEW: user_features(frames["events"], frames["items"], frames["users"]),
        catalog.ITEM_VIEW: item_features(frames["events"], frames["items"]),
    }
    reader = SnapshotReader(tables)
    history = History.from_events(past, frames["items"])
    policy = load_label_policy(load_settings("local").config_path / "labels.yaml")
    users = sorted(set(past[C.USER_ID]))[:90]
    log = simulated_impressions(
        candidates, truth, frames["items"], history, users, cutoff, 2, policy, seed=seed
    )
    tiers = frames["users"].drop_duplicates(C.USER_ID).set_index(C.USER_ID)[C.TIER]
    now = end + timedelta(hours=1)
    online = OnlineFeatures(reader, {v: 1e6 for v in catalog_views()})
    train = ranker_rows(log, online, tiers)
    ranker = fit_ranker(
        train, None, list(RF.FEATURES), REQUEST, "tier", policy, num_boost_round=rounds
    )
    return Served(candidates, ranker, reader, history, frames, now)


_WORLDS: list[Served] = []


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """One world per test session: every serving test module reads it, none changes it."""
    if not _WORLDS:
        _WORLDS.append(build_world(tmp_path_factory.mktemp("serving-world")))
    return _WORLDS[0]


def body(listener: str, k: int = 10, shelf: str = "home", country: str = "US") -> dict[str, Any]:
    return {
        "listener_id": listener,
        "context": {
            "device": "phone",
            "platform": "ios",
            "country": country,
            "timezone": "America/New_York",
            "timestamp": "2026-01-13T08:30:00Z",
        },
        "shelf": shelf,
        "k": k,
    }


def request(listener: str, **kwargs: Any) -> RecommendRequest:
    return RecommendRequest.model_validate_json(json.dumps(body(listener, **kwargs)))


def _user(served: Served, minor: bool) -> tuple[str, str]:
    users = served.frames["users"].drop_duplicates(C.USER_ID)
    pick = users[users[C.AGE_BUCKET].isin(D.MINOR_AGE_BUCKETS) == minor]
    known = pick[pick[C.USER_ID].isin(served.candidates.profile_ids)]
    row = known.iloc[len(known) // 2]
    return str(row[C.USER_ID]), str(row[C.COUNTRY])


def _explicit(served: Served) -> set[str]:
    items = served.frames["items"]
    return set(items.loc[items[C.EXPLICIT].fillna(True).astype(bool), C.ITEM_ID])


def _playable(served: Served, country: str) -> set[str]:
    items = served.frames["items"]
    ok = items[C.AVAILABLE_MARKETS].fillna("").str.split(",").map(lambda m: country in m)
    return set(items.loc[ok, C.ITEM_ID])


def test_a_known_listener_gets_k_ranked_safe_items_with_reasons(served: Served) -> None:
    pipe = served.pipeline()
    user, country = _user(served, minor=False)
    out = pipe.recommend(request(user, k=10, country=country))
    assert len(out.items) == 10
    assert len({i["item_id"] for i in out.items}) == 10
    assert not set(out.fallbacks) & {F.POPULAR_IN_COHORT, F.RANKER_FAILED, F.CANDIDATES_FAILED}
    assert set(out.stage_ms) == set(F.STAGES)
    assert {i["item_id"] for i in out.items} <= _playable(served, country)
    assert all(i["reasons"] for i in out.items)
    body_ = out.response("blue")
    assert body_["slot"] == "blue" and body_["model"] == {"candidates": "1", "ranker": "1"}


def test_minors_never_get_explicit_items_on_any_path(served: Served) -> None:
    user, country = _user(served, minor=True)
    explicit = _explicit(served)
    for pipe in (
        served.pipeline(),
        served.pipeline(models=ModelSet(served.candidates, None, "1", "-")),
    ):
        out = pipe.recommend(request(user, k=40, country=country))
        assert out.items and not explicit & {i["item_id"] for i in out.items}


def test_missing_ranker_answers_popular_in_market_for_the_cohort(served: Served) -> None:
    pipe = served.pipeline(models=ModelSet(served.candidates, None, "1", "none"))
    user, country = _user(served, minor=False)
    out = pipe.recommend(request(user, k=10, country=country))
    assert F.RANKER_MISSING in out.fallbacks and F.POPULAR_IN_COHORT in out.fallbacks
    assert len(out.items) == 10
    assert all(i["source"] == "popular_in_cohort" for i in out.items)
    assert all(any("popular with listeners like you" in r for r in i["reasons"]) for i in out.items)


def test_a_broken_ranker_falls_back_instead_of_failing(served: Served) -> None:
    broken = RankerModel(list(served.ranker.features), {}, {})  # no booster at all
    pipe = served.pipeline(models=ModelSet(served.candidates, broken, "1", "9"))
    user, country = _user(served, minor=False)
    out = pipe.recommend(request(user, k=5, country=country))
    assert F.RANKER_FAILED in out.fallbacks and len(out.items) == 5


def test_a_broken_candidate_model_falls_back_to_popular(served: Served) -> None:
    broken = dataclasses.replace(served.candidates, profiles=np.zeros((0, 1), dtype=np.float32))
    pipe = served.pipeline(models=ModelSet(broken, served.ranker, "7", "1"))
    user, country = _user(served, minor=False)
    out = pipe.recommend(request(user, k=5, country=country))
    assert F.CANDIDATES_FAILED in out.fallbacks and F.POPULAR_IN_COHORT in out.fallbacks
    assert len(out.items) == 5


def test_stale_features_are_replaced_by_defaults_and_counted(served: Served) -> None:
    later = served.now + timedelta(days=30)
    pipe = served.pipeline(now=lambda: later)
    user, country = _user(served, minor=False)
    out = pipe.recommend(request(user, k=10, country=country))
    assert F.USER_FEATURES_STALE in out.fallbacks
    assert F.ITEM_FEATURES_DEFAULTED in out.fallbacks
    assert out.stale["user_stale"] == 1 and out.stale["item_stale"] > 0
    assert len(out.items) == 10  # defaults still rank


def test_an_unknown_listener_gets_defaults_and_an_answer(served: Served) -> None:
    out = served.pipeline().recommend(request("u-never-seen", k=8, country="BR"))
    assert F.USER_FEATURES_MISSING in out.fallbacks and out.stale["user_missing"] == 1
    assert len(out.items) == 8
    assert not _explicit(served) & {i["item_id"] for i in out.items}  # unknown age: minor-safe


class JumpClock:
    """A clock that jumps one second while the named stage runs (no wall-clock assertions)."""

    def __init__(self, stage_index: int) -> None:
        self.calls = 0
        self.t = 0.0
        self.jump_at = 2 * stage_index + 1  # the end call of that stage

    def __call__(self) -> float:
        self.calls += 1
        if self.calls == self.jump_at + 1:
            self.t += 1.0
        return self.t


@pytest.mark.parametrize(("stage", "skipped"), [
    ("candidates", {"item_features", "ranker", "rerank"}),
    ("ranker", {"rerank"}),
])  # fmt: skip
def test_a_stage_past_its_budget_answers_with_the_best_so_far(
    served: Served, stage: str, skipped: set[str]
) -> None:
    clock = JumpClock(list(F.STAGES).index(stage))
    pipe = served.pipeline(clock=clock, budgets_ms={s: 100.0 for s in F.STAGES})
    user, country = _user(served, minor=False)
    out = pipe.recommend(request(user, k=10, country=country))
    assert F.over_budget(stage) in out.fallbacks
    assert not skipped & set(out.stage_ms)
    assert len(out.items) == 10
    assert F.POPULAR_IN_COHORT not in out.fallbacks
    if stage == "ranker":  # ranked order, not re-ranked: scores descend
        scores = [i["score"] for i in out.items]
        assert scores == sorted(scores, reverse=True)


def test_budgets_must_name_every_stage(served: Served) -> None:
    with pytest.raises(PipelineError, match="rerank"):
        served.pipeline(budgets_ms={s: 1.0 for s in F.STAGES if s != "rerank"})


def test_a_ranker_trained_on_other_inputs_is_refused_at_load(served: Served) -> None:
    other = RankerModel(["cf_score", "popularity"], served.ranker.boosters, {})
    with pytest.raises(PipelineError, match="version 3"):
        served.pipeline(models=ModelSet(served.candidates, other, "1", "3"))


VALID = body("u-1")


def _mutations() -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        st.tuples(
            st.just("k"),
            st.one_of(st.integers(max_value=0), st.integers(min_value=101), st.text(max_size=3)),
        ),
        st.tuples(
            st.just("shelf"),
            st.text(max_size=8).filter(lambda s: s not in ("home", "discover_weekly")),
        ),
        st.tuples(st.just("listener_id"), st.sampled_from(["", "a b", "x" * 200, "é"])),
        st.tuples(st.just("context.country"), st.sampled_from(["us", "USA", "", "1A"])),
        st.tuples(st.just("context.timezone"), st.sampled_from(["Mars/Base", "", "UTC+1"])),
        st.tuples(
            st.just("context.timestamp"),
            st.sampled_from(["yesterday", "2026-01-13T08:30:00", "2026-13-01T00:00:00Z"]),
        ),
        st.tuples(st.just("surprise"), st.integers()),
    )


@hsettings(max_examples=60, deadline=None)
@given(mutation=_mutations())
def test_invalid_bodies_are_rejected_naming_the_field(mutation: tuple[str, Any]) -> None:
    path, value = mutation
    data = json.loads(json.dumps(VALID))
    target = data
    *parents, leaf = path.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = value
    with pytest.raises(ValidationError) as info:
        RecommendRequest.model_validate_json(json.dumps(data))
    locs = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert path in locs, locs


@hsettings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.integers(0, 10_000),
    k=st.integers(1, 100),
    shelf=st.sampled_from(["home", "discover_weekly"]),
    country=st.sampled_from([*D.MARKETS, "AR", "ZZ"]),
)
def test_valid_requests_always_get_a_safe_answer(
    served: Served, index: int, k: int, shelf: str, country: str
) -> None:
    pipe = _shared_pipe(served)
    users = [*served.frames["users"][C.USER_ID].astype(str), "u-nobody"]
    user = users[index % len(users)]
    out = pipe.recommend(request(user, k=k, shelf=shelf, country=country))
    ids = [i["item_id"] for i in out.items]
    assert len(ids) == len(set(ids)) and len(ids) <= k
    market = country if country in D.MARKETS else "ZZ"
    if market != "ZZ":
        assert set(ids) <= _playable(served, market)
    if shelf == "discover_weekly":
        episodes = set(served.frames["items"].query("content_type == 'episode'")[C.ITEM_ID])
        assert not episodes & set(ids)


_PIPES: dict[int, RecommendationPipeline] = {}


def _shared_pipe(served: Served) -> RecommendationPipeline:
    return _PIPES.setdefault(id(served), served.pipeline())
