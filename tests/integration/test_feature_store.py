"""The feature store end to end on real Feast stores: SQLite locally, Redis on `services`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crossfade import columns as C
from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.features import catalog
from crossfade.features.context import request_context
from crossfade.features.online import OnlineFeatures
from crossfade.features.policy import load_policy
from crossfade.ranking import features as RF
from crossfade.ranking.dataset import REQUEST
from feature_repo.definitions import CANDIDATE_SERVICE, build_definitions, feature_table_path
from feature_repo.online_reader import FeastOnlineReader
from feature_repo.store import open_store
from feature_repo.training import training_set
from flows.features import features_flow
from flows.train_ranker import join_store_features
from tests.conftest import SMALL_WORLD, require_service

pytestmark = pytest.mark.usefixtures("prefect_server")


def _world(settings: Settings) -> None:
    """A small simulated world, published straight to the lake (ingest is tested elsewhere)."""
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)


@pytest.fixture
def world(settings: Settings) -> Settings:
    _world(settings)
    return settings


def _online(settings: Settings) -> OnlineFeatures:
    reader = FeastOnlineReader(open_store(settings), settings.features_dir)
    policy = load_policy(settings.config_path / settings.features.policy_file)
    return OnlineFeatures(reader, settings.features.freshness_hours, policy)


def _active_user(settings: Settings) -> str:
    table = pd.read_parquet(feature_table_path(settings.features_dir, catalog.USER_VIEW))
    latest = table[table[catalog.EVENT_TIMESTAMP] == table[catalog.EVENT_TIMESTAMP].max()]
    adults = latest[~latest["user_age_bucket"].isin(["13-17", "unknown"])]
    return str(adults.sort_values("user_plays_28d").iloc[-1][C.USER_ID])


def test_flow_materializes_fresh_features_served_by_the_fast_path(world: Settings) -> None:
    outcome = features_flow()
    assert outcome["status"] == "materialized"
    online = _online(world)
    user = _active_user(world)
    vector = online.user(user)
    assert not vector.defaulted, vector
    assert vector.values["user_plays_28d"] > 0
    assert vector.age_seconds is not None and vector.age_seconds < 36 * 3600
    items = lake.read_lake_table(world.lake_dir, "items")[C.ITEM_ID].to_pylist()[:500]
    batch = online.items([*items, "no-such-item"])
    assert batch.missing == 1 and batch.stale == 0
    assert batch.columns["item_duration_ms"][-1] == catalog.BY_NAME["item_duration_ms"].default
    assert online.counters["item_cache_loads"] == 1
    online.items(items)  # same materialization: served from the cache
    assert online.counters["item_cache_loads"] == 1

    # The plain Feast call returns the same values (the fast path is not a different truth).
    store = open_store(world)
    plain = store.get_online_features(
        features=["user_listening_stats:user_plays_28d"], entity_rows=[{C.USER_ID: user}]
    ).to_dict()
    assert plain["user_plays_28d"][0] == vector.values["user_plays_28d"]

    again = features_flow()  # idempotent rerun
    assert again["status"] == "materialized"
    assert _online(world).user(user).values["user_plays_28d"] == vector.values["user_plays_28d"]


def test_stale_online_values_are_replaced_by_defaults_and_counted(world: Settings) -> None:
    features_flow()
    online = _online(world)
    user = _active_user(world)
    later = datetime.now(UTC) + timedelta(days=10)  # Feast itself would still return the row
    vector = online.user(user, now=later)
    assert vector.stale and not vector.missing
    assert vector.values == catalog.defaults(catalog.USER_VIEW)
    assert online.counters["user_stale"] == 1
    items = online.items(
        ["x", *lake.read_lake_table(world.lake_dir, "items")[C.ITEM_ID].to_pylist()[:10]], now=later
    )
    assert items.stale == 10 and items.missing == 1
    unknown = online.user("u-never-seen")
    assert unknown.missing and online.counters["user_missing"] == 1


def test_point_in_time_join_never_leaks_a_future_value(world: Settings) -> None:
    features_flow()
    path = feature_table_path(world.features_dir, catalog.USER_VIEW)
    table = pd.read_parquet(path)
    user = _active_user(world)
    label_time = table[catalog.EVENT_TIMESTAMP].max() - timedelta(hours=6)
    planted = table[table[C.USER_ID] == user].sort_values(catalog.EVENT_TIMESTAMP).iloc[[-1]].copy()
    planted[catalog.EVENT_TIMESTAMP] = label_time + timedelta(hours=1)  # after the label
    planted["user_plays_28d"] = 999_999
    pd.concat([table, planted]).to_parquet(path, index=False)

    store = open_store(world)
    store.apply(build_definitions(world.features_dir).all())
    policy = load_policy(world.config_path / world.features.policy_file)
    rows = pd.DataFrame(
        {
            C.USER_ID: [user, user],
            catalog.EVENT_TIMESTAMP: [label_time, label_time + timedelta(hours=2)],
        }
    )
    got = training_set(store, rows, policy, service=CANDIDATE_SERVICE).sort_values(
        catalog.EVENT_TIMESTAMP
    )
    before, after = got["user_plays_28d"].tolist()
    assert before != 999_999, "a value dated after the label time reached the training row"
    assert after == 999_999  # the planted row is real and visible once its time has come


def test_cli_shows_a_listeners_online_features(world: Settings) -> None:
    from crossfade.cli import app

    features_flow()
    user = _active_user(world)
    result = CliRunner().invoke(app, ["features", "show", user])
    assert result.exit_code == 0, result.output
    assert "fresh" in result.output and "user_plays_28d" in result.output
    missing = CliRunner().invoke(app, ["features", "show", "u-nobody"])
    assert missing.exit_code == 1 and "missing" in missing.output


@pytest.fixture
def redis_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """`services` profile with a project of its own, torn down from Redis afterwards."""
    require_service("Redis", 6379)
    project = f"cftest_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CROSSFADE_PROFILE", "services")
    monkeypatch.setenv("CROSSFADE_FEATURES__PROJECT", project)
    for key, value in SMALL_WORLD.items():
        monkeypatch.setenv(f"CROSSFADE_SIMULATOR__{key.upper()}", str(value))
    settings = load_settings()
    yield settings
    open_store(settings).teardown()


@pytest.mark.services
def test_redis_online_store_materializes_and_reads_back(redis_settings: Settings) -> None:
    import redis

    _world(redis_settings)
    assert features_flow()["status"] == "materialized"
    client = redis.Redis.from_url(redis_settings.services.redis_url or "")
    assert client.dbsize() > 0
    online = _online(redis_settings)
    user = _active_user(redis_settings)
    vector = online.user(user)
    assert not vector.defaulted
    expected = pd.read_parquet(feature_table_path(redis_settings.features_dir, catalog.USER_VIEW))
    latest = expected[expected[C.USER_ID] == user].sort_values(catalog.EVENT_TIMESTAMP).iloc[-1]
    assert vector.values["user_plays_28d"] == latest["user_plays_28d"]
    items = online.items(
        lake.read_lake_table(redis_settings.lake_dir, "items")[C.ITEM_ID].to_pylist()[:50]
    )
    assert items.missing == 0 and items.stale == 0


def _ranker_rows(settings: Settings, at: list[datetime], users: list[str]) -> pd.DataFrame:
    """Impression-shaped rows (candidate crosses + request inputs) for the ranker's join."""
    items = lake.read_lake_table(settings.lake_dir, "items")[C.ITEM_ID].to_pylist()[:5]
    rows = []
    for request, (when, user) in enumerate(zip(at, users, strict=True)):
        for item in items:
            rows.append(
                {
                    REQUEST: request,
                    C.USER_ID: user,
                    C.ITEM_ID: item,
                    C.TS: when,
                    RF.REQUEST_TS: when,
                    RF.UTC_OFFSET: 60,
                    RF.REQUEST_DEVICE: "phone",
                    RF.REQUEST_PLATFORM: "android",
                    **dict.fromkeys(RF.CANDIDATE_CROSSES, 0.5),
                }
            )
    return pd.DataFrame(rows)


def test_ranker_join_uses_only_values_known_at_request_time(world: Settings) -> None:
    features_flow()
    path = feature_table_path(world.features_dir, catalog.ITEM_VIEW)
    table = pd.read_parquet(path)
    item = lake.read_lake_table(world.lake_dir, "items")[C.ITEM_ID].to_pylist()[0]
    request_at = table[catalog.EVENT_TIMESTAMP].max() - timedelta(hours=6)
    planted = table[table[C.ITEM_ID] == item].sort_values(catalog.EVENT_TIMESTAMP).iloc[[-1]]
    planted = planted.assign(**{catalog.EVENT_TIMESTAMP: request_at + timedelta(hours=1)})
    planted["item_plays_28d"] = 999_999
    pd.concat([table, planted]).to_parquet(path, index=False)
    user = _active_user(world)
    rows = _ranker_rows(world, [request_at, request_at + timedelta(hours=2)], [user, user])
    joined = join_store_features.fn(world, rows)
    assert list(joined[REQUEST]) == list(rows[REQUEST]) and len(joined) == len(rows)
    mine = joined[joined[C.ITEM_ID] == item].sort_values(REQUEST)
    before, after = mine["item_plays_28d"].tolist()
    assert before != 999_999, "a value written after the request time reached its row"
    assert after == 999_999  # the planted value is real, and used once its time has come
    # every row of a request gets its own item's values (no row collapsed into another)
    assert joined.groupby(REQUEST)[C.ITEM_ID].nunique().tolist() == [5, 5]


def test_ranker_trains_on_exactly_the_features_the_online_path_serves(world: Settings) -> None:
    features_flow()
    online = _online(world)
    user = _active_user(world)
    latest = pd.read_parquet(feature_table_path(world.features_dir, catalog.USER_VIEW))
    request_at = latest[catalog.EVENT_TIMESTAMP].max().to_pydatetime() + timedelta(hours=3)
    served_user = online.user(user, now=request_at)
    assert not served_user.defaulted
    rows = _ranker_rows(world, [request_at], [user])
    served_items = online.items(rows[C.ITEM_ID].tolist(), now=request_at)
    inputs = rows[[*RF.REQUEST_INPUTS]].iloc[[0]].reset_index(drop=True)
    context = pd.concat([inputs, request_context(inputs)], axis=1)

    # names: every store input of the ranker is what the online path returns under that name
    assert set(RF.USER_INPUTS) <= set(served_user.values)
    assert set(RF.ITEM_INPUTS) <= set(served_items.columns)
    assert set(RF.CONTEXT_INPUTS) <= set(context.columns)
    assert set(RF.STORE_INPUTS) <= {f.name for f in catalog.FEATURES}

    # meaning: the same request through the training join and through serving gives the
    # booster the same matrix, column for column
    trained = join_store_features.fn(world, rows)
    policy = load_policy(world.config_path / world.features.policy_file)
    crosses = rows[[C.ITEM_ID, *RF.CANDIDATE_CROSSES]]
    served = RF.model_inputs(RF.serving_inputs(crosses, served_user, served_items, context, policy))
    assert list(served.columns) == list(RF.FEATURES)
    pd.testing.assert_frame_equal(
        trained[list(RF.FEATURES)].reset_index(drop=True), served, check_dtype=False, rtol=1e-5
    )
