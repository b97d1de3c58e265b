"""The response model: a saved World answers ranked lists like its listeners would."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import SimulatorSettings
from crossfade.data import domains as D
from crossfade.data.contracts import contract
from crossfade.data.simulator import World, WorldFileError, simulate
from crossfade.data.simulator.sessions import playable

SIM = SimulatorSettings(
    users=300, days=3, artists=80, tracks=1_000, episodes=20, start_date=date(2026, 1, 5)
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("respond")
    batch = simulate(SIM, 21, root / "staging", root / "truth")
    return World.load(root / "truth" / batch.name)


def _when(world: World) -> datetime:
    return datetime.combine(world.start + timedelta(days=SIM.days), datetime.min.time(), UTC)


def test_load_names_a_missing_truth_folder(tmp_path: Path) -> None:
    with pytest.raises(WorldFileError, match=r"world\.json"):
        World.load(tmp_path)


def test_true_affinity_matches_the_factors(world: World) -> None:
    user = str(world.listeners.user_ids[5])
    items = [str(i) for i in world.catalogue.item_ids[:50]]
    got = world.true_affinity(user, items)
    expected = world.latent.user_factors[5] @ world.latent.item_factors[:50].T
    expected += world.latent.item_bias[:50]
    assert got.shape == (50,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="unknown item"):
        world.true_affinity(user, ["t-not-an-item"])


def test_respond_returns_contract_events(world: World) -> None:
    rng = np.random.default_rng(0)
    user = int(np.flatnonzero(~world.listeners.is_bot)[0])
    user_id = str(world.listeners.user_ids[user])
    ranked = [str(i) for i in world.catalogue.item_ids[:30]]
    ts = _when(world)
    table = world.respond(user_id, ranked, ts, rng)
    assert table.schema == contract("events").schema
    frame = table.to_pandas()
    assert len(frame) > 0 and frame[C.EVENT_ID].is_unique
    assert (frame[C.USER_ID] == user_id).all()
    assert set(frame[C.ITEM_ID]) <= set(ranked)
    assert (frame[C.COUNTRY] == D.MARKETS[world.listeners.country[user]]).all()
    assert (frame[C.TIER] == D.TIERS[world.listeners.tier[user]]).all()
    assert (frame[C.TS] >= pd.Timestamp(ts)).all() and frame[C.TS].is_monotonic_increasing
    duration = world.catalogue.item_duration_ms[world.item_index(frame[C.ITEM_ID].tolist())]
    assert (frame[C.MS_PLAYED].to_numpy() <= duration).all()
    assert frame[C.SESSION_ID].nunique() == 1
    # items the listener may not play are passed over
    played = world.item_index(frame[C.ITEM_ID].tolist())
    day = SIM.days
    assert playable(world, played, np.full(len(played), user), day).all()


def test_respond_rejects_bad_input(world: World) -> None:
    rng = np.random.default_rng(0)
    user_id = str(world.listeners.user_ids[0])
    item = [str(world.catalogue.item_ids[0])]
    with pytest.raises(ValueError, match="time zone"):
        world.respond(user_id, item, datetime(2026, 1, 10), rng)
    with pytest.raises(KeyError, match="unknown listener"):
        world.respond("u-nobody", item, _when(world), rng)
    with pytest.raises(ValueError, match="unknown context"):
        world.respond(user_id, item, _when(world), rng, context="elevator")


def test_a_list_sorted_by_true_affinity_beats_a_random_one(world: World) -> None:
    rng = np.random.default_rng(1)
    cat, lis = world.catalogue, world.listeners
    tracks = np.flatnonzero(~cat.item_is_episode)
    users = np.flatnonzero(~lis.is_bot)[:200]
    ts = _when(world)
    outcome: dict[str, list[pd.DataFrame]] = {"sorted": [], "random": []}
    for user in users:
        ok = tracks[playable(world, tracks, np.full(len(tracks), user), SIM.days)]
        affinity = world.latent.affinity_matrix(np.array([user]), ok)[0]
        lists = {
            "sorted": ok[np.argsort(-affinity)[:20]],
            "random": rng.choice(ok, size=20, replace=False),
        }
        for name, items in lists.items():
            ranked = [str(i) for i in cat.item_ids[items]]
            outcome[name].append(
                world.respond(str(lis.user_ids[user]), ranked, ts, rng).to_pandas()
            )
    best = pd.concat(outcome["sorted"])
    rand = pd.concat(outcome["random"])
    assert best[C.SKIPPED].mean() < rand[C.SKIPPED].mean() - 0.15
    assert best[C.SAVED].sum() > 2 * rand[C.SAVED].sum()
    assert len(best) > len(rand)  # fewer skips, so listeners stay longer


def test_same_rng_same_response(world: World) -> None:
    user_id = str(world.listeners.user_ids[3])
    ranked = [str(i) for i in world.catalogue.item_ids[100:120]]
    a = world.respond(user_id, ranked, _when(world), np.random.default_rng(9))
    b = world.respond(user_id, ranked, _when(world), np.random.default_rng(9))
    assert a.equals(b)
