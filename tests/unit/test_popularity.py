"""Popularity tables and sources: known answers on tiny frames, properties on a simulated world."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.candidates.popularity import (
    PopularityError,
    PopularityTables,
    availability_matrix,
)
from crossfade.config import SimulatorSettings
from crossfade.data import domains as D
from crossfade.data.lake import read_batch_table
from crossfade.data.simulator import World, simulate

NOW = datetime(2026, 2, 1, 12, tzinfo=UTC)
ALL = ",".join(D.MARKETS)
LONG = 200_000  # ms: a stream
Play = tuple[str, str, float, str, str]  # user, item, days ago, country, tier


def make_items(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Items frame with defaults: a track by a1, released long ago, everywhere, clean."""
    base = {
        C.ARTIST_ID: "a1",
        C.CONTENT_TYPE: "track",
        C.RELEASE_DATE: date(2020, 1, 1),
        C.EXPLICIT: False,
        C.AVAILABLE_MARKETS: ALL,
    }
    return pd.DataFrame([{**base, **r} for r in rows])


def make_events(rows: list[Play], **extra: object) -> pd.DataFrame:
    """Events from (user, item, days_ago, country, tier) tuples, all streams by default."""
    frame = pd.DataFrame(
        {
            C.USER_ID: [r[0] for r in rows],
            C.ITEM_ID: [r[1] for r in rows],
            C.TS: [NOW - timedelta(days=r[2]) for r in rows],
            C.COUNTRY: [r[3] for r in rows],
            C.TIER: [r[4] for r in rows],
            C.MS_PLAYED: LONG,
        }
    )
    for name, value in extra.items():
        frame[name] = value
    return frame


def make_users(ages: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({C.USER_ID: list(ages), C.AGE_BUCKET: list(ages.values())})


def plays(
    user: str, item: str, n: int, country: str = "US", tier: str = "premium", age: float = 1
) -> list[Play]:
    """`n` identical streams of `item` by `user`, `age` days before NOW."""
    return [(user, item, age, country, tier)] * n


# --- known answers ------------------------------------------------------------------------


def test_global_counts_decay_threshold_and_window() -> None:
    items = make_items([{C.ITEM_ID: i} for i in ("old", "new", "short", "late", "future")])
    events = make_events(
        plays("u1", "old", 3, age=14)  # 3 * 0.25 = 0.75
        + plays("u1", "new", 1, age=0)  # 1.0
        + plays("u1", "late", 5, age=40)  # outside the 28-day window
        + plays("u1", "future", 5, age=-1)  # after now
        + plays("u1", "unknown", 2)
    )
    events.loc[len(events)] = ["u1", "short", NOW, "US", "premium", 10_000]  # not a stream
    tables = PopularityTables.fit(events, make_users({"u1": "25-34"}), items, NOW)
    table = tables.global_table.set_index(C.ITEM_ID)["score"]
    assert table.to_dict() == pytest.approx({"new": 1.0, "old": 0.75})
    assert tables.stats["unknown_item_plays"] == 2
    assert tables.stats["short_plays"] == 1
    ids, scores = tables.popular_in_market("US", 10)
    assert ids == ["new", "old"]
    assert np.all(np.diff(scores) <= 0)


def test_bot_exclusion_removes_their_plays() -> None:
    items = make_items([{C.ITEM_ID: "farm"}, {C.ITEM_ID: "hit"}])
    events = make_events(plays("bot", "farm", 100) + plays("u1", "hit", 5) + plays("u2", "hit", 5))
    users = make_users({"bot": "25-34", "u1": "25-34", "u2": "18-24"})
    with_bots = PopularityTables.fit(events, users, items, NOW)
    assert with_bots.popular_in_market("US", 1)[0] == ["farm"]
    clean = PopularityTables.fit(events, users, items, NOW, exclude_users={"bot"})
    assert clean.popular_in_market("US", 5)[0] == ["hit"]
    assert clean.stats["excluded_user_plays"] == 100
    assert "farm" not in set(clean.global_table[C.ITEM_ID])


def test_market_is_country_of_play_and_thin_market_falls_back_to_global() -> None:
    items = make_items([{C.ITEM_ID: i} for i in ("us_hit", "de_hit", "other")])
    events = make_events(
        plays("u1", "us_hit", 200, "US")
        + plays("u2", "de_hit", 100, "DE")
        + plays("u2", "other", 60, "DE")
    )
    tables = PopularityTables.fit(events, make_users({"u1": "25-34", "u2": "25-34"}), items, NOW)
    assert tables.popular_in_market("DE", 1)[0] == ["de_hit"]
    assert tables.popular_in_market("US", 1)[0] == ["us_hit"]
    # no plays in France: exactly the global ranking
    fr_ids, fr_scores = tables.popular_in_market("FR", 3)
    gl_ids, gl_scores = tables.global_top("FR", 3)
    assert fr_ids == gl_ids == ["us_hit", "de_hit", "other"]
    np.testing.assert_allclose(fr_scores, gl_scores)


def test_cohort_uses_own_plays_when_thick_and_falls_back_when_thin() -> None:
    items = make_items([{C.ITEM_ID: i} for i in ("mainstream", "teen", "rare")])
    events = make_events(
        plays("adult", "mainstream", 300, tier="premium")
        + plays("teen1", "teen", 120, tier="ad_supported")
        + plays("thin", "rare", 2, tier="premium")
    )
    users = make_users({"adult": "35-44", "teen1": "13-17", "thin": "55+"})
    tables = PopularityTables.fit(events, users, items, NOW, min_plays=50)
    # thick cohort: its own favourite first even though the market prefers another item
    assert tables.popular_in_market("US", 1)[0] == ["mainstream"]
    assert tables.cohort("US", "13-17", "ad_supported", 1)[0] == ["teen"]
    # thin cohort (2 plays < 50): ranks like its market
    thin_ids, _ = tables.cohort("US", "55+", "premium", 3)
    assert thin_ids[:2] == tables.popular_in_market("US", 2)[0]
    # unknown cohort: exactly the market, and an unknown market: exactly global
    np.testing.assert_allclose(
        tables.cohort_share("US", "18-24", "premium"), tables.market_share("US")
    )
    np.testing.assert_allclose(tables.cohort_share("JP", "18-24", "premium"), tables.global_share())
    keys = tables.cohort_table[[C.COUNTRY, C.AGE_BUCKET, C.TIER]].drop_duplicates()
    assert len(keys) == 3


def test_availability_and_zz() -> None:
    items = make_items(
        [
            {C.ITEM_ID: "everywhere"},
            {C.ITEM_ID: "us_only", C.AVAILABLE_MARKETS: "US"},
            {C.ITEM_ID: "not_us", C.AVAILABLE_MARKETS: "GB,DE"},
        ]
    )
    events = make_events(
        plays("u1", "us_only", 9) + plays("u1", "not_us", 8) + plays("u1", "everywhere", 1)
    )
    tables = PopularityTables.fit(events, make_users({"u1": "25-34"}), items, NOW)
    assert tables.popular_in_market("US", 5)[0] == ["us_only", "everywhere"]
    assert tables.popular_in_market("GB", 5)[0] == ["not_us", "everywhere"]
    assert tables.popular_in_market("ZZ", 5)[0] == ["everywhere"]
    assert tables.popular_in_market("XX", 5)[0] == ["everywhere"]  # unknown code: like ZZ
    matrix = availability_matrix(pd.Series([ALL, "US", "USA", None]))
    assert matrix[:, D.COUNTRIES.index("US")].tolist() == [True, True, False, False]
    assert matrix[:, D.COUNTRIES.index("ZZ")].tolist() == [True, False, False, False]


def test_unreleased_items_are_never_returned() -> None:
    items = make_items(
        [
            {C.ITEM_ID: "out"},
            {C.ITEM_ID: "tomorrow", C.RELEASE_DATE: NOW.date() + timedelta(days=1)},
        ]
    )
    events = make_events(plays("u1", "out", 1) + plays("u1", "tomorrow", 5))  # e.g. a pre-release
    tables = PopularityTables.fit(events, make_users({"u1": "25-34"}), items, NOW)
    assert tables.popular_in_market("US", 5)[0] == ["out"]
    assert tables.by_artists(["a1"], 5)[0] == ["out"]


def test_fresh_releases_window_prior_and_traction() -> None:
    today = NOW.date()
    items = make_items(
        [
            {C.ITEM_ID: "catalogue"},  # old, popular
            {C.ITEM_ID: "hot", C.RELEASE_DATE: today - timedelta(days=3)},
            {C.ITEM_ID: "silent", C.ARTIST_ID: "a2", C.RELEASE_DATE: today},  # no plays yet
            {C.ITEM_ID: "flop", C.ARTIST_ID: "a2", C.RELEASE_DATE: today - timedelta(days=10)},
            {C.ITEM_ID: "stale", C.RELEASE_DATE: today - timedelta(days=20)},
            {C.ITEM_ID: "gb_only", C.RELEASE_DATE: today, C.AVAILABLE_MARKETS: "GB"},
            {C.ITEM_ID: "unreleased", C.RELEASE_DATE: today + timedelta(days=2)},
        ]
    )
    events = make_events(
        plays("u1", "catalogue", 100) + plays("u1", "hot", 30) + plays("u1", "stale", 50)
    )
    tables = PopularityTables.fit(events, make_users({"u1": "25-34"}), items, NOW)
    ids, scores = tables.fresh_releases("US", NOW, days=14, k=10)
    assert set(ids) == {"hot", "silent", "flop"}
    assert ids[0] == "hot"
    assert ids.index("silent") < ids.index("flop")  # unplayed for 10 days sinks below brand new
    assert np.all(scores > 0) and np.all(np.diff(scores) <= 0)
    # a later query moves the window: "hot" is no longer fresh
    later = tables.fresh_releases("US", NOW + timedelta(days=12), days=14, k=10)[0]
    assert "hot" not in later and "unreleased" in later
    assert tables.fresh_releases("GB", NOW, 14, 10)[0].count("gb_only") == 1


def test_episodes_and_by_artists() -> None:
    items = make_items(
        [
            {C.ITEM_ID: "t1"},
            {C.ITEM_ID: "e1", C.CONTENT_TYPE: "episode", C.ARTIST_ID: "pub"},
            {C.ITEM_ID: "e2", C.CONTENT_TYPE: "episode", C.ARTIST_ID: "pub"},
            {C.ITEM_ID: "b1", C.ARTIST_ID: "b"},
            {C.ITEM_ID: "b2", C.ARTIST_ID: "b", C.RELEASE_DATE: date(2024, 1, 1)},
            {C.ITEM_ID: "b_de", C.ARTIST_ID: "b", C.AVAILABLE_MARKETS: "DE"},
        ]
    )
    events = make_events(
        plays("u1", "t1", 50) + plays("u1", "e2", 5) + plays("u1", "e1", 2) + plays("u1", "b1", 3)
    )
    tables = PopularityTables.fit(events, make_users({"u1": "25-34"}), items, NOW)
    assert tables.episodes("US", 10)[0] == ["e2", "e1"]
    ids, scores = tables.by_artists(["b", "nobody"], 10, country="US")
    assert ids == ["b1", "b2"]  # b2 never played, still offered; b_de not in the US
    assert scores[1] == 0
    assert tables.by_artists(["b"], 10)[0] == ["b1", "b2", "b_de"]
    assert tables.explicit(["t1", "missing"]).tolist() == [False, True]
    assert set(tables.artist_table[C.ARTIST_ID]) == {"a1", "pub", "b"}
    assert set(tables.episode_table[C.ITEM_ID]) == {"e1", "e2"}


def test_bad_input_is_named() -> None:
    items = make_items([{C.ITEM_ID: "t1"}])
    with pytest.raises(PopularityError, match="events"):
        PopularityTables.fit(pd.DataFrame({C.USER_ID: []}), make_users({}), items, NOW)
    with pytest.raises(PopularityError, match="window_days"):
        PopularityTables.fit(make_events([]), make_users({}), items, NOW, window_days=0)
    with pytest.raises(PopularityError, match="fit and save"):
        PopularityTables.load(Path("/nonexistent"))


# --- a simulated world --------------------------------------------------------------------

SIM = SimulatorSettings(
    users=300, days=7, artists=60, tracks=600, episodes=40, start_date=date(2026, 1, 5)
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("popularity-world")
    batch = simulate(SIM, 11, root / "staging", root / "truth")
    frames = {t: read_batch_table(batch, t).to_pandas() for t in ("events", "users", "items")}
    truth = World.load(root / "truth" / batch.name)
    bots = set(truth.listeners.user_ids[truth.listeners.is_bot].tolist())
    now = datetime.combine(SIM.start_date + timedelta(days=SIM.days), datetime.min.time(), UTC)
    tables = PopularityTables.fit(
        frames["events"], frames["users"], frames["items"], now, exclude_users=bots
    )
    return {**frames, "tables": tables, "bots": bots, "now": now}


def test_fit_is_deterministic_and_round_trips(world: dict, tmp_path: Path) -> None:
    tables: PopularityTables = world["tables"]
    again = PopularityTables.fit(
        world["events"], world["users"], world["items"], world["now"], exclude_users=world["bots"]
    )
    pd.testing.assert_frame_equal(tables.cohort_table, again.cohort_table)
    tables.save(tmp_path / "pop")
    tables.save(tmp_path / "pop")  # overwrite: stale files are cleaned up
    assert len(list((tmp_path / "pop").glob("*.parquet"))) == 4
    loaded = PopularityTables.load(tmp_path / "pop")
    for country in ("US", "ZZ", "JP"):
        assert (
            loaded.cohort(country, "18-24", "premium", 50)[0]
            == tables.cohort(country, "18-24", "premium", 50)[0]
        )
        assert (
            loaded.fresh_releases(country, world["now"], 14, 20)[0]
            == tables.fresh_releases(country, world["now"], 14, 20)[0]
        )
    assert loaded.stats == tables.stats


def test_bots_on_the_simulated_world(world: dict) -> None:
    events: pd.DataFrame = world["events"]
    bot_plays = events[events[C.USER_ID].isin(world["bots"])]
    assert len(bot_plays) > 0
    tables: PopularityTables = world["tables"]
    assert tables.stats["excluded_user_plays"] == len(bot_plays)
    with_bots = PopularityTables.fit(events, world["users"], world["items"], world["now"])
    assert with_bots.global_counts.sum() > tables.global_counts.sum()


@hsettings(max_examples=60, deadline=None)
@given(
    country=st.sampled_from([*D.COUNTRIES, "XX"]),
    age=st.sampled_from(D.AGE_BUCKETS),
    tier=st.sampled_from(D.TIERS),
    k=st.integers(0, 120),
    days=st.integers(0, 30),
    picks=st.integers(0, 5),
)
def test_every_source_respects_the_market(
    world: dict, country: str, age: str, tier: str, k: int, days: int, picks: int
) -> None:
    tables: PopularityTables = world["tables"]
    items = world["items"].set_index(C.ITEM_ID)
    artists = sorted(items[C.ARTIST_ID].unique())[: picks * 7 : 7]
    results = {
        "market": tables.popular_in_market(country, k),
        "cohort": tables.cohort(country, age, tier, k),
        "fresh": tables.fresh_releases(country, world["now"], days, k),
        "episodes": tables.episodes(country, k),
        "artists": tables.by_artists(artists, k, country=country),
    }
    market = country if country in D.MARKETS else None
    for name, (ids, scores) in results.items():
        assert len(ids) == len(scores) <= k, name
        assert len(set(ids)) == len(ids), name
        assert np.all(np.diff(scores) <= 1e-15), name
        lists = items.loc[ids, C.AVAILABLE_MARKETS].str.split(",")
        if market is None:
            assert all(set(D.MARKETS) <= set(m) for m in lists), name
        else:
            assert all(market in m for m in lists), name
        released = pd.to_datetime(items.loc[ids, C.RELEASE_DATE]).dt.date
        assert all(d <= world["now"].date() for d in released), name
    assert all(items.loc[results["episodes"][0], C.CONTENT_TYPE] == "episode")
    assert set(items.loc[results["artists"][0], C.ARTIST_ID]) <= set(artists)
    window_start = world["now"].date() - timedelta(days=days)
    fresh_dates = pd.to_datetime(items.loc[results["fresh"][0], C.RELEASE_DATE]).dt.date
    assert all(window_start < d for d in fresh_dates)
