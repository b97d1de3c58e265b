"""Pseudonymization, retention and erasure across the core's file stores."""

from __future__ import annotations

import json
import logging
import stat
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crossfade import columns as C
from crossfade.config import Settings, SimulatorSettings, load_settings
from crossfade.data import lake
from crossfade.data.simulator import World, build_world, simulate
from crossfade.safety import paths
from crossfade.safety.erasure import (
    AUDIT_FILE,
    LISTENER_ID,
    core_stores,
    erase_listener,
    verify_listener,
)
from crossfade.safety.privacy import (
    PrivacyError,
    apply_retention,
    edge_pseudonymizer,
    key_id,
    listener_view,
    local_key_path,
    pseudonym_key,
    pseudonymize,
    pseudonymize_batch,
    pseudonymize_staged,
    pseudonymous_world,
    record_key_id,
)
from tests.conftest import SMALL_WORLD

KEY = b"test-key-not-a-secret"


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_pseudonyms_are_stable_keyed_and_distinct(a: str, b: str) -> None:
    assert pseudonymize(a, KEY) == pseudonymize(a, KEY)
    assert pseudonymize(a, KEY) != pseudonymize(a, KEY + b"2")
    if a != b:
        assert pseudonymize(a, KEY) != pseudonymize(b, KEY)
    assert a not in pseudonymize(a, KEY)[1:] or len(a) < 3


def test_key_comes_from_env_and_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PrivacyError, match="CROSSFADE_PRIVACY__PSEUDONYM_KEY"):
        pseudonym_key(load_settings("services"))
    monkeypatch.setenv("CROSSFADE_PRIVACY__PSEUDONYM_KEY", "s3cret-value")
    settings = load_settings("local")
    assert pseudonym_key(settings) == b"s3cret-value"
    assert pseudonym_key(load_settings("services")) == b"s3cret-value"
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())
    assert "s3cret" not in key_id(b"s3cret-value")
    assert not local_key_path(settings).exists()  # a configured key is never replaced


def test_pseudonymization_is_on_by_default() -> None:
    assert load_settings("local").privacy.pseudonymize_at_ingest


def test_local_profile_makes_its_own_private_key_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="crossfade.safety.privacy"):
        first = pseudonym_key(settings)
        second = pseudonym_key(settings)
    path = local_key_path(settings)
    assert path.is_relative_to(settings.data_root) and first == second and len(first) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    created = [r for r in caplog.records if "created a local key file" in r.getMessage()]
    assert len(created) == 1 and first.decode() not in caplog.text
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left over


def test_a_key_file_wins_and_an_empty_one_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("from-a-file\n")
    settings = load_settings("cluster", privacy={"pseudonym_key_file": file})
    assert pseudonym_key(settings) == b"from-a-file"
    file.write_text("")
    with pytest.raises(PrivacyError, match="empty"):
        pseudonym_key(settings)


def test_a_rotated_key_is_detected(settings: Settings) -> None:
    assert record_key_id(settings, KEY) == key_id(KEY)
    assert record_key_id(settings, KEY) == key_id(KEY)  # same key: fine
    with pytest.raises(PrivacyError, match="re-key"):
        record_key_id(settings, b"another")


def _published(settings: Settings) -> pd.DataFrame:
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)
    return lake.read_lake_table(settings.lake_dir, "events").to_pandas()


def test_staged_batch_is_pseudonymized_consistently(settings: Settings) -> None:
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    raw_users = set(lake.read_batch_table(batch, "users").to_pandas()[C.USER_ID])
    pseudonymize_batch(batch, KEY)
    users = set(lake.read_batch_table(batch, "users").to_pandas()[C.USER_ID])
    events = set(lake.read_batch_table(batch, "events").to_pandas()[C.USER_ID])
    assert users == {pseudonymize(u, KEY) for u in raw_users}
    assert events <= users and not users & raw_users
    assert lake.read_batch_info(batch).details["pseudonym_key_id"] == key_id(KEY)
    assert pseudonymize_batch(batch, KEY) == {}  # idempotent
    with pytest.raises(PrivacyError, match="already pseudonymized"):
        pseudonymize_batch(batch, b"other")


def test_retention_drops_old_event_partitions_only(settings: Settings) -> None:
    events = _published(settings)
    days = sorted(pd.to_datetime(events[C.TS]).dt.date.unique())
    today = days[-1] + timedelta(days=1)
    result = apply_retention(settings.lake_dir, 3, today=today)
    left = lake.read_lake_table(settings.lake_dir, "events").to_pandas()
    assert pd.to_datetime(left[C.TS]).dt.date.min() >= today - timedelta(days=3)
    assert (
        result["dropped"]["events"]
        and not lake.read_lake_table(settings.lake_dir, "users").to_pandas().empty
    )
    again = apply_retention(settings.lake_dir, 3, today=today)
    assert again["dropped"]["events"] == []
    with pytest.raises(ValueError, match="retention_days"):
        apply_retention(settings.lake_dir, 0, today=date(2026, 1, 1))


def _seed_other_stores(settings: Settings, victim: str, other: str) -> None:
    logs = paths.logs_dir(settings)
    for kind in ("requests", "feedback"):
        folder = logs / kind
        folder.mkdir(parents=True)
        lines = [{LISTENER_ID: victim, "k": 1}, {LISTENER_ID: other, "k": 2}]
        (folder / "blue-1-2026-01-01.jsonl").write_text(
            "".join(json.dumps(x) + "\n" for x in lines)
        )
    exposures = paths.experiments_dir(settings) / "exp1" / "exposures"
    exposures.mkdir(parents=True)
    pd.DataFrame({LISTENER_ID: [victim, other], "variant": ["a", "b"]}).to_parquet(
        exposures / "part-0.parquet"
    )
    settings.features_dir.mkdir(parents=True)
    pd.DataFrame({C.USER_ID: [victim, other, victim], "user_plays_28d": [1, 2, 3]}).to_parquet(
        settings.features_dir / "user_listening_stats.parquet"
    )


def test_erasure_clears_every_core_store_and_keeps_everyone_else(settings: Settings) -> None:
    events = _published(settings)
    # a second, staged batch also holds the listener
    simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    victim, other = events[C.USER_ID].value_counts().index[:2]
    _seed_other_stores(settings, victim, other)
    stores = core_stores(settings)
    ids = frozenset({victim})
    before = {f.store for f in verify_listener(stores, ids)}
    assert before == {
        "lake", "staging", "feature_tables", "serving_logs", "experiment_exposures"
    }  # fmt: skip
    n_events = len(events)
    removed, remaining = erase_listener(stores, ids)
    assert remaining == [] and {f.store for f in removed} == before
    after = lake.read_lake_table(settings.lake_dir, "events").to_pandas()
    assert victim not in set(after[C.USER_ID]) and other in set(after[C.USER_ID])
    assert len(after) == n_events - (events[C.USER_ID] == victim).sum()
    manifest = lake.manifests(settings.lake_dir)[0]
    assert manifest["row_counts"]["events"] == len(after) and manifest["erasures"] == 1
    for rel in (r for files in manifest["files"].values() for r in files):
        assert (settings.lake_dir / rel).is_file()  # the manifest names only live files
    kept = pd.read_parquet(settings.features_dir / "user_listening_stats.parquet")
    assert list(kept[C.USER_ID]) == [other]
    assert erase_listener(stores, ids) == ([], [])  # idempotent


def test_cli_erase_then_verify_writes_a_pseudonymous_audit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossfade.cli import app

    events = _published(settings)
    victim = str(events[C.USER_ID].iloc[0])
    runner = CliRunner()
    monkeypatch.setenv("CROSSFADE_PROFILE", "services")  # a shared profile needs a given key
    refused = runner.invoke(app, ["privacy", "erase", victim])
    assert refused.exit_code == 1 and "pseudonym key" in refused.output
    monkeypatch.delenv("CROSSFADE_PROFILE")
    monkeypatch.setenv("CROSSFADE_PRIVACY__PSEUDONYM_KEY", KEY.decode())
    for key, value in SMALL_WORLD.items():
        monkeypatch.setenv(f"CROSSFADE_SIMULATOR__{key.upper()}", str(value))
    found = runner.invoke(app, ["privacy", "verify", victim])
    assert found.exit_code == 1 and "lake" in found.output
    erased = runner.invoke(app, ["privacy", "erase", victim])
    assert erased.exit_code == 0, erased.output
    assert runner.invoke(app, ["privacy", "verify", victim]).exit_code == 0
    audit = (paths.privacy_dir(settings) / AUDIT_FILE).read_text()
    record = json.loads(audit.splitlines()[-1])
    assert victim not in audit and record["pseudonym"] == pseudonymize(victim, KEY)
    assert record["removed"]["lake"] > 0 and record["remaining"] == 0
    for path in settings.lake_dir.rglob("*.parquet"):
        table = pq.read_table(path)
        if C.USER_ID in table.column_names:
            assert victim not in set(table.column(C.USER_ID).to_pylist())


def _world(settings: Settings) -> World:
    return build_world(settings.simulator, settings.seed)


@cache
def _worlds() -> tuple[World, World]:
    sim = SimulatorSettings(**SMALL_WORLD, start_date=date(2026, 1, 5))
    world = build_world(sim, 3)
    return world, pseudonymous_world(world, KEY)


@hyp_settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.integers(0, SMALL_WORLD["users"] - 1), min_size=1, max_size=5))
def test_the_pseudonymous_world_answers_like_the_world(rows: list[int]) -> None:
    world, view = _worlds()
    raw = [str(world.listeners.user_ids[r]) for r in rows]
    fake = [pseudonymize(u, KEY) for u in raw]
    assert list(view.user_index(fake)) == rows == list(world.user_index(raw))
    items = [str(i) for i in world.catalogue.item_ids[:30]]
    assert list(view.true_affinity(fake[0], items)) == list(world.true_affinity(raw[0], items))
    at = datetime.combine(world.start + timedelta(days=1), time(12), UTC)
    ours = view.respond(fake[0], items, at, np.random.default_rng(7)).to_pandas()
    theirs = world.respond(raw[0], items, at, np.random.default_rng(7)).to_pandas()
    assert set(ours[C.USER_ID]) <= {fake[0]} and len(ours) == len(theirs)
    assert list(ours[C.ITEM_ID]) == list(theirs[C.ITEM_ID])
    with pytest.raises(KeyError, match="unknown listener"):
        view.user_index(raw[:1])  # the view knows no raw id


def test_the_stores_decide_whether_ids_are_pseudonyms(settings: Settings) -> None:
    world = _world(settings)
    raw = str(world.listeners.user_ids[0])
    # empty lake, default on: pseudonyms, and the local key is made on first use
    view = listener_view(settings, world)
    key = pseudonym_key(settings)
    assert str(view.listeners.user_ids[0]) == pseudonymize(raw, key)
    assert edge_pseudonymizer(settings)(raw) == pseudonymize(raw, key)
    off = load_settings(
        "local", data_root=settings.data_root, privacy={"pseudonymize_at_ingest": False}
    )
    assert listener_view(off, world) is world and edge_pseudonymizer(off)(raw) == raw
    # a lake published raw (no key record) stays raw, and ingestion refuses to mix in pseudonyms
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)
    assert listener_view(settings, world) is world and edge_pseudonymizer(settings)(raw) == raw
    second = simulate(settings.simulator, 9, settings.staging_dir, settings.truth_dir)
    with pytest.raises(PrivacyError, match="raw listener ids"):
        pseudonymize_staged(settings, second)


def test_a_key_that_is_not_the_stores_key_is_refused(settings: Settings) -> None:
    record_key_id(settings, KEY)
    with pytest.raises(PrivacyError, match="not the one the stores use"):
        edge_pseudonymizer(settings)  # the local key differs from KEY
    keyed = load_settings(
        "local", data_root=settings.data_root, privacy={"pseudonym_key": KEY.decode()}
    )
    assert edge_pseudonymizer(keyed)("u1") == pseudonymize("u1", KEY)
