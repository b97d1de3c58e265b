"""Erasure from every store, including the real Feast online stores (SQLite and Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.features import catalog
from crossfade.safety import paths
from crossfade.safety.erasure import LISTENER_ID, all_stores, erase_listener, verify_listener
from feature_repo.erasure import register
from feature_repo.store import open_store
from flows.features import apply_definitions, compute_tables, materialize, publish_tables
from tests.conftest import SMALL_WORLD, require_service


def _materialized_world(settings: Settings) -> str:
    """Publish a small world, build and materialize its features; return an active listener."""
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)
    tables = compute_tables.fn(settings)
    publish_tables.fn(settings, tables)
    apply_definitions.fn(settings)
    materialize.fn(settings, datetime.now(UTC))
    users = tables[catalog.USER_VIEW]
    latest = users[users[catalog.EVENT_TIMESTAMP] == users[catalog.EVENT_TIMESTAMP].max()]
    victim = str(latest.sort_values("user_plays_28d").iloc[-1][C.USER_ID])
    folder = paths.logs_dir(settings) / "requests"
    folder.mkdir(parents=True)
    (folder / "blue-1.jsonl").write_text(f'{{"{LISTENER_ID}": "{victim}", "k": 10}}\n')
    exposures = paths.experiments_dir(settings) / "e1" / "exposures"
    exposures.mkdir(parents=True)
    pd.DataFrame({LISTENER_ID: [victim], "variant": ["treatment"]}).to_parquet(
        exposures / "part-0.parquet"
    )
    return victim


def _online_value(settings: Settings, listener: str) -> object:
    store = open_store(settings)
    got = store.get_online_features(
        features=["user_listening_stats:user_plays_28d"], entity_rows=[{C.USER_ID: listener}]
    ).to_dict()
    return got["user_plays_28d"][0]


def _erase_everywhere(settings: Settings, victim: str, online: str) -> None:
    register()
    stores = all_stores(settings)
    ids = frozenset({victim})
    before = {f.store for f in verify_listener(stores, ids)}
    assert {"lake", "feature_tables", "serving_logs", "experiment_exposures", online} <= before
    assert _online_value(settings, victim) is not None
    removed, remaining = erase_listener(stores, ids)
    assert remaining == [], remaining
    assert {f.store for f in removed} >= before
    assert _online_value(settings, victim) is None  # Feast itself no longer finds the listener


def test_erasure_covers_the_sqlite_online_store(settings: Settings) -> None:
    victim = _materialized_world(settings)
    others = lake.read_lake_table(settings.lake_dir, "users")[C.USER_ID].to_pylist()
    neighbour = next(u for u in others if u != victim)
    before = _online_value(settings, neighbour)
    _erase_everywhere(settings, victim, "online_sqlite")
    assert _online_value(settings, neighbour) == before  # nobody else is touched


@pytest.fixture
def redis_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """`services` profile with a Feast project of its own, torn down from Redis afterwards."""
    require_service("Redis", 6379)
    monkeypatch.setenv("CROSSFADE_FEATURES__PROJECT", f"cftest_{uuid.uuid4().hex[:8]}")
    settings = load_settings("services", data_root=tmp_path / "data", simulator=SMALL_WORLD)
    yield settings
    open_store(settings).teardown()


@pytest.mark.services
def test_erasure_covers_the_redis_online_store(redis_settings: Settings) -> None:
    import redis

    victim = _materialized_world(redis_settings)
    _erase_everywhere(redis_settings, victim, "online_redis")
    client = redis.Redis.from_url(redis_settings.services.redis_url or "")
    project = redis_settings.features.project.encode()
    keys = list(client.scan_iter(match=b"*" + project, count=1_000))
    assert keys, "the other listeners' features must still be in Redis"
    assert not [k for k in keys if victim.encode() in k]
