"""The NumPy request path against the pandas definitions it replaces, on the serving world.

- the ranker's input matrix (`serving.fast_inputs`) equals `ranking.features.model_inputs`
  over `serving_inputs` (same columns, same values) and the boosters score it identically,
  for generated listeners, markets, devices, time zones, request times, with and without
  the minimization policy, fresh or stale features, and without an online store;
- whole pipelines (`fast=True` vs `fast=False`) give identical answers request after
  request, re-ranking and fairness state included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.candidates.generator import Candidate
from crossfade.config import load_settings
from crossfade.data import domains as D
from crossfade.features import catalog
from crossfade.features.online import OnlineFeatures
from crossfade.features.policy import FeaturePolicy, load_policy
from crossfade.ranking import features as RF
from crossfade.serving import reference
from crossfade.serving.api import RecommendRequest, RequestContext
from crossfade.serving.catalog import market_of
from crossfade.serving.fast_inputs import RankerInputs, context_values
from crossfade.serving.pipeline import RecommendationPipeline
from tests.unit.test_serving_pipeline import Served, catalog_views, served  # noqa: F401

ZONES = ["America/New_York", "Europe/Berlin", "Asia/Kolkata", "UTC", "Australia/Adelaide"]
DEVICES = [*D.DEVICES, "fridge"]
PLATFORMS = [*D.PLATFORMS, "amiga"]
_POLICY: list[FeaturePolicy] = []


def policy() -> FeaturePolicy:
    if not _POLICY:
        settings = load_settings("local")
        _POLICY.append(load_policy(settings.config_path / settings.features.policy_file))
    return _POLICY[0]


def make_request(
    user: str, country: str, device: str, platform: str, zone: str, at: datetime, **kw: Any
) -> RecommendRequest:
    context = RequestContext(
        device=device, platform=platform, country=country, timezone=zone, timestamp=at
    )
    return RecommendRequest(
        listener_id=user,
        context=context,
        shelf=kw.get("shelf", "home"),
        k=kw.get("k", 10),
    )


def matrices(
    pipe: RecommendationPipeline, req: RecommendRequest, now: datetime
) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast and reference inputs of one request (None when it has no candidates)."""
    from crossfade.serving.pipeline import _Run

    run = _Run(lambda: 0.0, pipe.budgets_ms)
    vector = pipe._user(req.listener_id, now, run)
    listener = pipe._listener(req.listener_id, market_of(req.context.country), vector)
    found = pipe._candidates(listener, now, req.shelf)
    if not found:
        return None
    batch = pipe._item_features([c.item_id for c in found], pipe.inputs.rows(found), now, run)
    fast = pipe.inputs.matrix(listener.user_id, found, vector, batch, req.context)
    slow = reference.ranker_matrix(
        pipe.models.candidates, pipe.catalog, pipe.history, pipe.policy,
        listener.user_id, found, vector, batch, req.context,
    )  # fmt: skip
    return fast, slow


def users_of(world: Served) -> list[str]:
    return [*sorted(world.frames["users"][C.USER_ID].astype(str).unique()), "u-nobody"]


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.integers(0, 10_000),
    country=st.sampled_from([*D.MARKETS, "ZZ", "AR"]),
    device=st.sampled_from(DEVICES),
    platform=st.sampled_from(PLATFORMS),
    zone=st.sampled_from(ZONES),
    minutes=st.integers(-3 * 24 * 60, 40 * 24 * 60),
    with_policy=st.booleans(),
    shelf=st.sampled_from(["home", "discover_weekly"]),
)
def test_the_ranker_matrix_equals_model_inputs_and_scores_equal(
    served: Served,  # noqa: F811
    index: int,
    country: str,
    device: str,
    platform: str,
    zone: str,
    minutes: int,
    with_policy: bool,
    shelf: str,
) -> None:
    rules = policy() if with_policy else None
    now = served.now + timedelta(minutes=minutes)  # far enough ahead, features go stale
    online = OnlineFeatures(served.reader, {v: 36.0 for v in catalog_views()}, rules)
    pipe = served.pipeline(features=online, policy=rules, now=lambda: now)
    users = users_of(served)
    req = make_request(users[index % len(users)], country, device, platform, zone, now, shelf=shelf)
    pair = matrices(pipe, req, now)
    if pair is None:
        return
    fast, slow = pair
    assert fast.dtype == np.float32 and fast.shape == (slow.shape[0], len(RF.FEATURES))
    np.testing.assert_array_equal(fast, slow)
    for booster in served.ranker.boosters.values():
        np.testing.assert_array_equal(booster.predict(fast), booster.predict(slow))


def test_a_strict_region_minor_has_features_withheld_on_both_paths(served: Served) -> None:  # noqa: F811
    users = served.frames["users"].drop_duplicates(C.USER_ID)
    strict = users[
        users[C.COUNTRY].isin(policy().regions["strict"])
        & users[C.AGE_BUCKET].isin(D.MINOR_AGE_BUCKETS)
        & users[C.USER_ID].isin(served.candidates.profile_ids)
    ]
    assert len(strict), "the serving world should hold strict-region minors"
    row = strict.iloc[0]
    rules = policy()
    online = OnlineFeatures(served.reader, {v: 36.0 for v in catalog_views()}, rules)
    pipe = served.pipeline(features=online, policy=rules)
    req = make_request(
        str(row[C.USER_ID]), str(row[C.COUNTRY]), "phone", "ios", "Europe/Berlin", served.now
    )
    denied = rules.denied_features(str(row[C.COUNTRY]), str(row[C.AGE_BUCKET]))
    assert "user_country" in denied
    pair = matrices(pipe, req, served.now)
    assert pair is not None
    np.testing.assert_array_equal(*pair)


def test_without_an_online_store_the_default_features_match_too(served: Served) -> None:  # noqa: F811
    pipe = served.pipeline(features=None)
    for user in users_of(served)[:: max(1, len(users_of(served)) // 12)]:
        req = make_request(user, "US", "car", "android", "UTC", served.now)
        pair = matrices(pipe, req, served.now)
        if pair is not None:
            np.testing.assert_array_equal(*pair)


@given(
    at=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from([*ZONES, "America/St_Johns", "Pacific/Chatham"]),
    device=st.sampled_from(DEVICES),
)
def test_request_context_values_match_the_on_demand_view(
    at: datetime, zone: str, device: str
) -> None:
    from crossfade.features.context import request_context
    from crossfade.serving.fast_inputs import utc_offset_minutes

    ctx = RequestContext(device=device, platform="ios", country="US", timezone=zone, timestamp=at)
    inputs = pd.DataFrame(
        {
            RF.REQUEST_TS: [pd.Timestamp(at)],
            RF.UTC_OFFSET: [utc_offset_minutes(zone, at)],
            RF.REQUEST_DEVICE: [device],
            RF.REQUEST_PLATFORM: ["ios"],
        }
    )
    expected = request_context(inputs).iloc[0]
    got = context_values(ctx)
    for name in (*RF.CONTEXT_NUMERIC, "ctx_device"):
        assert got[name] == expected[name], name
    assert got["utc_hour"] == pd.Timestamp(at).hour


def test_fast_and_pandas_pipelines_answer_identically_request_after_request(
    served: Served,  # noqa: F811
) -> None:
    fast, slow = served.pipeline(), served.pipeline(fast=False)
    rng = np.random.default_rng(3)
    users = users_of(served)
    for n in range(50):
        req = make_request(
            users[int(rng.integers(len(users)))],
            str(rng.choice([*D.MARKETS, "ZZ", "AR"])),
            str(rng.choice(DEVICES)),
            str(rng.choice(PLATFORMS)),
            str(rng.choice(ZONES)),
            served.now - timedelta(minutes=int(rng.integers(0, 600))),
            k=int(rng.choice([1, 5, 10, 30, 100])),
            shelf=str(rng.choice(["home", "discover_weekly"])),
        )
        a, b = fast.recommend(req), slow.recommend(req)
        assert a.items == b.items, n
        assert a.fallbacks == b.fallbacks and a.stale == b.stale
    assert fast.reranker.tracker.to_dict() == slow.reranker.tracker.to_dict()
    assert fast.reranker.tracker.requests > 30


def test_the_ranker_inputs_refuse_a_batch_of_other_items(served: Served) -> None:  # noqa: F811
    pipe = served.pipeline()
    online = pipe.features
    assert online is not None
    user = users_of(served)[0]
    found = served.candidates.generate(user, now=served.now)[:3]
    batch = online.items([c.item_id for c in reversed(found)], served.now)
    vector = online.user(user, served.now)
    req = make_request(user, "US", "phone", "ios", "UTC", served.now)
    with pytest.raises(ValueError, match="same items in one order"):
        RankerInputs(pipe.catalog, served.candidates, served.history).matrix(
            user, found, vector, batch, req.context
        )


def test_candidates_without_rows_or_outside_the_catalogue_get_the_reference_inputs(
    served: Served,  # noqa: F811
) -> None:
    """The merge hands each candidate its catalogue row; candidates built by hand (row -1),
    and items the catalogue does not know, are looked up by id and give the same matrix."""
    pipe = served.pipeline()
    online = pipe.features
    assert online is not None
    user = next(u for u in users_of(served) if served.candidates.profile(u) is not None)
    found = served.candidates.generate(user, now=served.now)[:20]
    assert found and all(c.row >= 0 for c in found)
    by_hand = [Candidate(c.item_id, c.source, c.score, list(c.sources)) for c in found]
    by_hand.append(Candidate("t-not-in-the-catalogue", "content", 0.5, ["content"]))
    with_rows = [*found, by_hand[-1]]
    ids = [c.item_id for c in by_hand]
    req = make_request(user, "US", "phone", "ios", "UTC", served.now)
    vector = online.user(user, served.now)
    rows = pipe.inputs.rows(with_rows)
    assert rows[-1] == -1 and (rows[:-1] == [c.row for c in found]).all()
    by_id = online.items(ids, served.now)
    by_row = online.items(ids, served.now, rows=rows, universe=pipe.catalog.item_ids)
    for name, column in by_id.columns.items():
        assert np.array_equal(column, by_row.columns[name]), name
    assert (by_id.missing, by_id.stale) == (by_row.missing, by_row.stale) and by_id.missing >= 1
    slow = reference.ranker_matrix(
        pipe.models.candidates, pipe.catalog, pipe.history, pipe.policy,
        user, by_hand, vector, by_id, req.context,
    )  # fmt: skip
    for candidates in (by_hand, with_rows):
        fast = pipe.inputs.matrix(user, candidates, vector, by_row, req.context)
        np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-6)


def test_every_store_input_the_fast_path_reads_is_a_catalogue_feature() -> None:
    assert set(RF.STORE_INPUTS) <= set(catalog.BY_NAME)
