"""The simulator writes one valid staged batch: contracts, integrity, ids, times, determinism."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.config import Settings, SimulatorSettings
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.contracts import CONTRACTS, contract
from crossfade.data.simulator import World, build_world, simulate

START = date(2026, 1, 5)  # pinned: the default start is relative to today
SMALL = SimulatorSettings(users=200, days=7, artists=60, tracks=600, episodes=40, start_date=START)
SEED = 7


def read_all(batch_dir: Path) -> dict[str, pd.DataFrame]:
    """Every table of a staged batch as a DataFrame."""
    return {name: lake.read_batch_table(batch_dir, name).to_pandas() for name in CONTRACTS}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[tuple[int, int]]]:
    """One small simulated batch shared by the module: (batch dir, truth dir, progress calls)."""
    root = tmp_path_factory.mktemp("sim")
    calls: list[tuple[int, int]] = []
    batch = simulate(
        SMALL, SEED, root / "staging", root / "truth", progress=lambda d, t: calls.append((d, t))
    )
    return batch, root / "truth" / batch.name, calls


@pytest.fixture(scope="module")
def tables(run: tuple[Path, Path, list[tuple[int, int]]]) -> dict[str, pd.DataFrame]:
    return read_all(run[0])


@pytest.fixture(scope="module")
def labels(run: tuple[Path, Path, list[tuple[int, int]]]) -> pd.DataFrame:
    return pq.read_table(run[1] / "labels.parquet").to_pandas()


def test_uses_the_settings_fixture(settings: Settings) -> None:
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    assert batch.parent == settings.staging_dir
    assert (settings.truth_dir / batch.name / "world.json").is_file()
    info = lake.read_batch_info(batch)
    assert info.row_counts["users"] == settings.simulator.users


def test_batch_layout_counts_and_progress(
    run: tuple[Path, Path, list[tuple[int, int]]], tables: dict[str, pd.DataFrame]
) -> None:
    batch, _, calls = run
    info = lake.read_batch_info(batch)
    assert info.source == "simulator"
    assert info.window_start == SMALL.start_date
    assert info.window_end == SMALL.start_date + timedelta(days=SMALL.days - 1)
    assert info.details["seed"] == SEED
    assert info.row_counts == {name: len(frame) for name, frame in tables.items()}
    assert set(info.row_counts) == set(CONTRACTS)
    assert calls == [(d, SMALL.days) for d in range(1, SMALL.days + 1)]
    for table in ("events", "ad_impressions"):
        days = sorted(p.parent.name for p in lake.table_files(batch, table))
        expected = [f"date={SMALL.start_date + timedelta(days=d)}" for d in range(SMALL.days)]
        assert days == expected
    for table in ("users", "artists", "items", "onboarding"):
        assert len(lake.table_files(batch, table)) == 1
    assert lake.unknown_tables(batch) == []


def test_parts_hold_their_own_day(run: tuple[Path, Path, list[tuple[int, int]]]) -> None:
    for table in ("events", "ad_impressions"):
        for path in lake.table_files(run[0], table):
            day = date.fromisoformat(path.parent.name.split("=")[1])
            ts = pq.read_table(path).column(C.TS).to_pandas()
            assert (ts.dt.date == day).all()
            assert ts.is_monotonic_increasing


def test_tables_conform_to_their_contracts(run: tuple[Path, Path, list[tuple[int, int]]]) -> None:
    for name, spec in CONTRACTS.items():
        for path in lake.table_files(run[0], name):
            schema = pq.read_schema(path)
            assert schema.names == spec.schema.names, name
            assert [f.type for f in schema] == [f.type for f in spec.schema], name
        data = lake.read_batch_table(run[0], name)
        for column in spec.required:
            assert data.column(column).null_count == 0, (name, column)


def test_values_come_from_the_simulator_domains(tables: dict[str, pd.DataFrame]) -> None:
    for name, spec in CONTRACTS.items():
        frame = tables[name]
        for column, allowed in spec.domains.items():
            values = set(frame[column].unique())
            assert values <= set(allowed), (name, column, values - set(allowed))
            assert D.UNKNOWN not in values and D.UNKNOWN_COUNTRY not in values, (name, column)
        for column, (lo, hi) in spec.ranges.items():
            series = frame[column].dropna()
            assert lo is None or (series >= lo).all(), (name, column)
            assert hi is None or (series <= hi).all(), (name, column)
    items = tables["items"]
    for markets in items[C.AVAILABLE_MARKETS]:
        assert set(markets.split(",")) <= set(D.MARKETS)
    assert items[C.AVAILABLE_MARKETS].nunique() > 1  # availability differs by market
    assert set(items[C.CONTENT_TYPE]) == {"track", "episode"}
    tags = items[C.TAGS].str.split(" ")
    assert (tags.str.len() >= 2).all()


def test_referential_integrity(tables: dict[str, pd.DataFrame]) -> None:
    users = set(tables["users"][C.USER_ID])
    items = set(tables["items"][C.ITEM_ID])
    artists = set(tables["artists"][C.ARTIST_ID])
    assert set(tables["events"][C.USER_ID]) <= users
    assert set(tables["events"][C.ITEM_ID]) <= items
    assert set(tables["ad_impressions"][C.USER_ID]) <= users
    assert set(tables["onboarding"][C.USER_ID]) <= users
    assert set(tables["onboarding"][C.ARTIST_ID]) <= artists
    assert set(tables["items"][C.ARTIST_ID]) <= artists


def test_ids_are_unique_and_pseudonymous(tables: dict[str, pd.DataFrame]) -> None:
    for name, spec in CONTRACTS.items():
        assert tables[name][spec.key].is_unique, name
    assert tables["users"][C.USER_ID].str.fullmatch(r"u[0-9a-f]{12}").all()
    artists = tables["artists"][C.ARTIST_ID]
    assert artists.str.fullmatch(r"a[0-9a-f]{12}").all()
    items = tables["items"]
    prefix = np.where(items[C.CONTENT_TYPE] == "track", "t", "e")
    assert (items[C.ITEM_ID].str[0] == prefix).all()


def test_times_are_in_window_and_after_signup_and_release(
    tables: dict[str, pd.DataFrame],
) -> None:
    start = pd.Timestamp(SMALL.start_date, tz="UTC")
    end = start + pd.Timedelta(days=SMALL.days)
    for name in ("events", "ad_impressions", "onboarding"):
        column = contract(name).time_column
        ts = tables[name][column]
        assert ((ts >= start) & (ts < end)).all(), name
    ev = tables["events"].merge(tables["users"], on=C.USER_ID, suffixes=("", "_user"))
    ev = ev.merge(tables["items"][[C.ITEM_ID, C.RELEASE_DATE]], on=C.ITEM_ID)
    day = ev[C.TS].dt.date
    assert (day >= ev[C.SIGNUP_DATE]).all()
    assert (day >= ev[C.RELEASE_DATE]).all()
    # country and tier on events are the listener's
    assert (ev[C.COUNTRY] == ev[f"{C.COUNTRY}_user"]).all()
    assert (ev[C.TIER] == ev[f"{C.TIER}_user"]).all()
    ads = tables["ad_impressions"].merge(tables["users"], on=C.USER_ID, suffixes=("", "_u"))
    assert (ads[C.COUNTRY] == ads[f"{C.COUNTRY}_u"]).all()


def test_plays_are_physically_possible(tables: dict[str, pd.DataFrame]) -> None:
    ev = tables["events"].merge(tables["items"], on=C.ITEM_ID)
    assert (ev[C.MS_PLAYED] >= 0).all()
    assert (ev[C.MS_PLAYED] <= ev[C.DURATION_MS]).all()
    skipped = ev[ev[C.SKIPPED]]
    assert (skipped[C.MS_PLAYED] < skipped[C.DURATION_MS]).all()
    assert skipped[C.MS_PLAYED].median() < ev.loc[~ev[C.SKIPPED], C.MS_PLAYED].median()
    # reason_end agrees with skips; a finished track played to its end
    assert set(skipped[C.REASON_END]) <= {"fwdbtn", "backbtn"}
    assert not ev.loc[~ev[C.SKIPPED], C.REASON_END].isin(["fwdbtn", "backbtn"]).any()
    done = ev[ev[C.REASON_END] == "trackdone"]
    assert (done[C.MS_PLAYED] == done[C.DURATION_MS]).all()
    # engagement never on skips; replays are flagged and start with the back button
    assert not (ev[C.SKIPPED] & (ev[C.SAVED] | ev[C.ADDED_TO_PLAYLIST])).any()
    replays = ev[ev[C.REPLAY]]
    assert len(replays) > 0 and (replays[C.REASON_START] == "backbtn").all()


def test_devices_contexts_and_flags(tables: dict[str, pd.DataFrame]) -> None:
    ev = tables["events"].merge(tables["items"][[C.ITEM_ID, C.CONTENT_TYPE]], on=C.ITEM_ID)
    allowed = {
        "phone": {"ios", "android"},
        "tablet": {"ios", "android"},
        "car": {"ios", "android"},
        "desktop": {"windows", "macos", "linux"},
        "speaker": {"cast"},
        "tv": {"cast"},
        "web": {"web"},
    }
    for device, platforms in ev.groupby(C.DEVICE)[C.PLATFORM].unique().items():
        assert set(platforms) <= allowed[device], device
    episodes = ev[C.CONTENT_TYPE] == "episode"
    assert (ev.loc[episodes, C.CONTEXT_TYPE] == "podcast_show").all()
    assert (ev.loc[~episodes, C.CONTEXT_TYPE] != "podcast_show").all()
    assert ev[C.CONTEXT_TYPE].nunique() >= 8
    assert ev[C.SHUFFLE].any() and ev[C.OFFLINE].any()
    offline = ev[ev[C.OFFLINE] & ~episodes]
    assert (offline[C.TIER] == "premium").all()  # only Premium downloads music


def test_podcasts_reach_a_subset_of_listeners(tables: dict[str, pd.DataFrame]) -> None:
    ev = tables["events"].merge(tables["items"], on=C.ITEM_ID)
    listeners = ev[C.USER_ID].nunique()
    podcast = ev.loc[ev[C.CONTENT_TYPE] == "episode", C.USER_ID].nunique()
    assert 0 < podcast < 0.7 * listeners
    items = tables["items"]
    episodes = items[items[C.CONTENT_TYPE] == "episode"]
    assert set(episodes[C.GENRE]) <= set(D.PODCAST_GENRES)
    assert (
        episodes[C.DURATION_MS].median()
        > 5 * items.loc[items[C.CONTENT_TYPE] == "track", C.DURATION_MS].median()
    )
    assert episodes["danceability"].isna().all()


def test_new_listeners_sign_up_in_window_and_onboard(
    tables: dict[str, pd.DataFrame], labels: pd.DataFrame
) -> None:
    users = tables["users"].merge(labels, on=C.USER_ID)
    window_end = SMALL.start_date + timedelta(days=SMALL.days - 1)
    new = users[users[C.SIGNUP_DATE] >= SMALL.start_date]
    humans = (~users[C.IS_BOT]).sum()
    assert len(new) == round(humans * SMALL.new_user_share)
    assert (new[C.SIGNUP_DATE] <= window_end).all()
    picks = tables["onboarding"]
    counts = picks.groupby(C.USER_ID).size()
    assert set(counts.index) == set(new[C.USER_ID])
    assert counts.between(3, 5).all()
    picked = picks.merge(users[[C.USER_ID, C.SIGNUP_DATE]], on=C.USER_ID)
    assert (picked[C.PICKED_AT].dt.date == picked[C.SIGNUP_DATE]).all()
    first_play = tables["events"].groupby(C.USER_ID)[C.TS].min()
    last_pick = picks.groupby(C.USER_ID)[C.PICKED_AT].max()
    both = first_play.index.intersection(last_pick.index)
    assert (first_play[both] > last_pick[both]).all()


def test_onboarding_picks_mostly_match_taste(
    run: tuple[Path, Path, list[tuple[int, int]]], tables: dict[str, pd.DataFrame]
) -> None:
    world = World.load(run[1])
    picks = tables["onboarding"]
    artist_row = {a: i for i, a in enumerate(world.catalogue.artist_ids.tolist())}
    users = world.user_index(picks[C.USER_ID].to_numpy())
    artists = np.array([artist_row[a] for a in picks[C.ARTIST_ID]])
    u, a = world.latent.user_factors, world.latent.artist_factors
    picked = np.einsum("ij,ij->i", u[users], a[artists])
    cat = world.catalogue
    music = np.flatnonzero((cat.artist_item_count > 0) & np.isin(cat.artist_genre, range(16)))
    typical = (u[users] @ a[music].T).mean(axis=1)
    assert (picked > typical).mean() > 0.75
    assert set(cat.artist_genre[artists]) <= set(range(len(D.MUSIC_GENRES)))


def test_ad_breaks_only_for_ad_supported(tables: dict[str, pd.DataFrame]) -> None:
    users = tables["users"]
    ads = tables["ad_impressions"].merge(users, on=C.USER_ID)
    assert len(ads) > 0
    assert (ads[C.TIER] == "ad_supported").all()
    ev = tables["events"].merge(tables["items"][[C.ITEM_ID, C.CONTENT_TYPE]], on=C.ITEM_ID)
    music = ev[(ev[C.CONTENT_TYPE] == "track") & (ev[C.TIER] == "ad_supported")]
    ads_per_play = len(ads) / len(music)
    assert 1 / 7 < ads_per_play < 1 / 2.5  # a break every 3-5 tracks, fewer at session ends
    heavy = music.groupby(C.USER_ID).size()
    heavy = heavy[heavy >= 30].index
    assert set(heavy) <= set(ads[C.USER_ID])
    assert set(ads[C.AD_ID].str[:2]) == {"ad"}


def test_new_releases_play_only_from_release_day(tables: dict[str, pd.DataFrame]) -> None:
    items = tables["items"]
    fresh = items[items[C.RELEASE_DATE] >= SMALL.start_date]
    assert len(fresh) > 0
    ev = tables["events"].merge(fresh[[C.ITEM_ID, C.RELEASE_DATE]], on=C.ITEM_ID)
    assert len(ev) > 0
    assert (ev[C.TS].dt.date >= ev[C.RELEASE_DATE]).all()


def test_truth_is_kept_apart(run: tuple[Path, Path, list[tuple[int, int]]]) -> None:
    batch, truth, _ = run
    meta = json.loads((truth / "world.json").read_text())
    assert meta["seed"] == SEED
    assert SimulatorSettings(**meta["simulator"]) == SMALL
    factors = np.load(truth / "factors.npz")
    assert factors["user_factors"].shape == (SMALL.users, SMALL.latent_dim)
    assert factors["item_factors"].shape == (SMALL.tracks + SMALL.episodes, SMALL.latent_dim)
    assert factors["item_bias"].shape == (SMALL.tracks + SMALL.episodes,)
    labels = pq.read_table(truth / "labels.parquet").to_pandas()
    assert labels[C.IS_BOT].sum() == round(SMALL.users * SMALL.bot_share)
    assert labels.loc[labels[C.IS_BOT], C.BOT_RING].notna().all()
    assert labels.loc[~labels[C.IS_BOT], C.BOT_RING].isna().all()
    # nothing of the truth leaks into the observable batch
    for name in CONTRACTS:
        columns = set(lake.read_batch_table(batch, name).column_names)
        assert not columns & {C.IS_BOT, C.BOT_RING, C.AFFINITY}


def test_same_seed_same_tables_other_seed_other_tables(
    run: tuple[Path, Path, list[tuple[int, int]]], tmp_path: Path
) -> None:
    again = simulate(SMALL, SEED, tmp_path / "staging", tmp_path / "truth")
    for name in CONTRACTS:
        first = lake.table_files(run[0], name)
        second = lake.table_files(again, name)
        assert [p.relative_to(run[0]) for p in first] == [p.relative_to(again) for p in second]
        for a, b in zip(first, second, strict=True):
            assert a.read_bytes() == b.read_bytes(), a.relative_to(run[0])
    other = simulate(SMALL, SEED + 1, tmp_path / "staging", tmp_path / "truth")
    for name in ("users", "items", "events"):
        a = lake.read_batch_table(run[0], name)
        b = lake.read_batch_table(other, name)
        assert not a.equals(b), name


def test_world_build_is_deterministic() -> None:
    a, b = build_world(SMALL, 3), build_world(SMALL, 3)
    assert np.array_equal(a.latent.user_factors, b.latent.user_factors)
    assert np.array_equal(a.catalogue.item_ids, b.catalogue.item_ids)
    assert a.tag == b.tag
    c = build_world(SMALL, 4)
    assert not np.array_equal(a.listeners.user_ids, c.listeners.user_ids)


def test_a_failed_run_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossfade.data.simulator import run as run_module

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_module, "human_day", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate(SMALL, SEED, tmp_path / "staging", tmp_path / "truth")
    assert list((tmp_path / "staging").iterdir()) == []
    assert not (tmp_path / "truth").exists() or list((tmp_path / "truth").iterdir()) == []


def test_world_load_round_trips(run: tuple[Path, Path, list[tuple[int, int]]]) -> None:
    loaded = World.load(run[1])
    built = build_world(SMALL, SEED)
    assert loaded.tag == built.tag
    assert np.array_equal(loaded.latent.item_factors, built.latent.item_factors)
    assert np.array_equal(loaded.listeners.is_bot, built.listeners.is_bot)
    assert np.array_equal(loaded.catalogue.item_markets, built.catalogue.item_markets)


@hsettings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    users=st.integers(1, 60),
    days=st.integers(1, 4),
    artists=st.integers(2, 25),
    tracks=st.integers(10, 80),
    episodes=st.integers(0, 12),
    premium_share=st.floats(0, 1),
    minor_share=st.floats(0, 1),
    new_user_share=st.floats(0, 1),
    new_release_share=st.floats(0, 1),
    bot_share=st.floats(0, 0.5),
    bot_ring_size=st.integers(1, 8),
    seed=st.integers(0, 2**31),
)
def test_any_small_world_keeps_integrity(tmp_path: Path, seed: int, **sizes: float) -> None:
    sim = SimulatorSettings(start_date=START, **sizes)  # type: ignore[arg-type]
    batch = simulate(sim, seed, tmp_path / f"s{seed}", tmp_path / f"t{seed}")
    t = read_all(batch)
    assert t["users"][C.USER_ID].is_unique and len(t["users"]) == sim.users
    assert set(t["events"][C.USER_ID]) <= set(t["users"][C.USER_ID])
    assert set(t["events"][C.ITEM_ID]) <= set(t["items"][C.ITEM_ID])
    assert set(t["items"][C.ARTIST_ID]) <= set(t["artists"][C.ARTIST_ID])
    assert set(t["onboarding"][C.ARTIST_ID]) <= set(t["artists"][C.ARTIST_ID])
    assert t["events"][C.EVENT_ID].is_unique
    ev = t["events"].merge(t["items"], on=C.ITEM_ID).merge(t["users"], on=C.USER_ID)
    assert (ev[C.MS_PLAYED] <= ev[C.DURATION_MS]).all()
    assert (ev[C.TS].dt.date >= ev[C.RELEASE_DATE]).all()
    assert (ev[C.TS].dt.date >= ev[C.SIGNUP_DATE]).all()
    explicit_for_filtered = ev[
        ev[C.EXPLICIT] & ev[C.USER_ID].isin(_filtered(tmp_path, seed, batch))
    ]
    assert explicit_for_filtered.empty
    start = pd.Timestamp(sim.start_date, tz="UTC")
    assert (ev[C.TS] >= start).all() and (ev[C.TS] < start + pd.Timedelta(days=sim.days)).all()
    ads = t["ad_impressions"].merge(t["users"], on=C.USER_ID)
    assert (ads[C.TIER] == "ad_supported").all()


def _filtered(tmp_path: Path, seed: int, batch: Path) -> set[str]:
    labels = pq.read_table(tmp_path / f"t{seed}" / batch.name / "labels.parquet").to_pandas()
    return set(labels.loc[labels["explicit_filter"], C.USER_ID])
