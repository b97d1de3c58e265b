"""The simulated world looks like a streaming service: the realism targets of the simulator.

The targets are stated in `crossfade.data.simulator`'s docstring; a 1,000-listener, 14-day
world with the default catalogue is checked against them, and a bot-heavy world against the
patterns that bot detection is meant to find.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from crossfade import columns as C
from crossfade.config import SimulatorSettings
from crossfade.data import lake
from crossfade.data.simulator import World, simulate

START = date(2026, 1, 5)  # pinned: the default start is relative to today
WORLD = SimulatorSettings(users=1_000, days=14, start_date=START)
BOT_WORLD = SimulatorSettings(
    users=300,
    days=7,
    artists=80,
    tracks=800,
    episodes=20,
    bot_share=0.1,
    bot_ring_size=6,
    start_date=START,
)


def _plays(root: Path, sim: SimulatorSettings, seed: int) -> tuple[pd.DataFrame, World]:
    """Events joined with items, users and the truth labels, plus the World."""
    batch = simulate(sim, seed, root / "staging", root / "truth")
    truth = root / "truth" / batch.name
    ev = lake.read_batch_table(batch, "events").to_pandas()
    items = lake.read_batch_table(batch, "items").to_pandas()
    users = lake.read_batch_table(batch, "users").to_pandas()
    labels = pq.read_table(truth / "labels.parquet").to_pandas()
    ev = ev.merge(items.drop(columns=[C.LANGUAGE]), on=C.ITEM_ID)
    ev = ev.merge(users[[C.USER_ID, C.AGE_BUCKET]], on=C.USER_ID)
    ev = ev.merge(labels, on=C.USER_ID)
    return ev, World.load(truth)


@pytest.fixture(scope="module")
def world_plays(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, World]:
    return _plays(tmp_path_factory.mktemp("realism"), WORLD, 11)


@pytest.fixture(scope="module")
def human(world_plays: tuple[pd.DataFrame, World]) -> pd.DataFrame:
    ev = world_plays[0]
    return ev[~ev[C.IS_BOT]]


@pytest.fixture(scope="module")
def bot_plays(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return _plays(tmp_path_factory.mktemp("bots"), BOT_WORLD, 5)[0]


def _entropy(counts: pd.Series) -> float:
    p = counts.to_numpy(dtype=float) / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_skip_rate_is_realistic(human: pd.DataFrame) -> None:
    rate = human[C.SKIPPED].mean()
    assert 0.20 <= rate <= 0.40, rate


def test_a_few_hits_take_a_large_share(world_plays: tuple[pd.DataFrame, World]) -> None:
    ev = world_plays[0]
    tracks = ev[ev[C.CONTENT_TYPE] == "track"]
    per_track = tracks[C.ITEM_ID].value_counts()
    top = int(np.ceil(0.01 * WORLD.tracks))
    share = per_track.iloc[:top].sum() / per_track.sum()
    assert share >= 0.15, share


def test_listener_activity_is_heavy_tailed(human: pd.DataFrame) -> None:
    per_user = human[C.USER_ID].value_counts()
    top = per_user.iloc[: max(1, len(per_user) // 10)].sum() / per_user.sum()
    assert top >= 0.3, top


def test_weekly_rhythm(human: pd.DataFrame) -> None:
    per_weekday = human[C.TS].dt.weekday.value_counts()
    assert len(per_weekday) == 7
    assert per_weekday.max() >= 1.10 * per_weekday.min(), per_weekday.to_dict()


def test_plays_peak_in_the_local_evening(human: pd.DataFrame) -> None:
    local = human[C.TS] + pd.to_timedelta(human["utc_offset_minutes"], unit="m")
    hours = local.dt.hour.value_counts().sort_index()
    assert 18 <= hours.idxmax() <= 23, hours.idxmax()
    assert hours.loc[18:23].sum() > 2 * hours.loc[[2, 3, 4, 5, 6, 7]].sum()


def test_minors_rarely_hear_explicit_content(human: pd.DataFrame) -> None:
    tracks = human[human[C.CONTENT_TYPE] == "track"]
    minors = tracks.loc[tracks[C.AGE_BUCKET] == "13-17", C.EXPLICIT].mean()
    adults = tracks.loc[tracks[C.AGE_BUCKET] != "13-17", C.EXPLICIT].mean()
    assert minors < adults / 4, (minors, adults)


def test_skips_follow_true_affinity_and_position(
    world_plays: tuple[pd.DataFrame, World], human: pd.DataFrame
) -> None:
    world = world_plays[1]
    tracks = human[human[C.CONTENT_TYPE] == "track"].copy()
    users = world.user_index(tracks[C.USER_ID].to_numpy())
    items = world.item_index(tracks[C.ITEM_ID].to_numpy())
    tracks["affinity"] = world.latent.affinity_pairs(users, items)
    quartile = pd.qcut(tracks["affinity"], 4, labels=False)
    by_quartile = tracks.groupby(quartile)[C.SKIPPED].mean()
    assert by_quartile.is_monotonic_decreasing, by_quartile.to_dict()
    assert by_quartile.iloc[0] > by_quartile.iloc[-1] + 0.15
    saves = tracks.groupby(quartile)[C.SAVED].mean()
    assert saves.iloc[-1] > 2 * saves.iloc[0]
    position = tracks.sort_values(C.TS).groupby(C.SESSION_ID).cumcount()
    assert (
        tracks.loc[position >= 10, C.SKIPPED].mean() > tracks.loc[position == 0, C.SKIPPED].mean()
    )


def test_markets_have_their_own_tastes(human: pd.DataFrame) -> None:
    share = pd.crosstab(human[C.COUNTRY], human[C.GENRE], normalize="index")
    assert share.loc["BR", "latin"] > 3 * share.loc["JP", "latin"]
    assert share.loc["JP", "jpop"] > 3 * share.loc["US", "jpop"]
    assert share.loc["IN", "bollywood"] > 3 * share.loc["GB", "bollywood"]
    assert share.loc["NG", "afrobeats"] > 3 * share.loc["SE", "afrobeats"]


def test_bots_stream_just_over_thirty_seconds_in_lockstep(bot_plays: pd.DataFrame) -> None:
    bots = bot_plays[bot_plays[C.IS_BOT]]
    humans = bot_plays[~bot_plays[C.IS_BOT]]
    assert len(bots) > 0
    assert 30_000 < bots[C.MS_PLAYED].median() <= 36_000
    assert (bots[C.MS_PLAYED] > 30_000).all()
    assert not (bots[C.SAVED] | bots[C.ADDED_TO_PLAYLIST] | bots[C.FOLLOWED_ARTIST]).any()
    for _, ring in bots.groupby(C.BOT_RING):
        item_sets = ring.groupby(C.USER_ID)[C.ITEM_ID].apply(frozenset)
        assert item_sets.nunique() == 1  # every member streams the same tracks
        assert len(item_sets.iloc[0]) <= 10
        times = ring.groupby(C.USER_ID)[C.TS].apply(lambda s: s.sort_values().to_numpy())
        first = times.iloc[0]
        for other in times.iloc[1:]:
            assert len(other) == len(first)
            lag = np.abs((other - first).astype("timedelta64[s]").astype(int))
            assert lag.max() <= 20
    # they favour the long tail
    popular = humans[C.ITEM_ID].value_counts()
    ring_tracks = bots[C.ITEM_ID].unique()
    assert popular.reindex(ring_tracks).fillna(0).median() < popular.median()


def test_bots_have_no_daily_rhythm_and_low_entropy(bot_plays: pd.DataFrame) -> None:
    bots = bot_plays[bot_plays[C.IS_BOT]]
    humans = bot_plays[~bot_plays[C.IS_BOT]]
    bot_hours = bots[C.TS].dt.hour.value_counts().reindex(range(24), fill_value=0)
    assert _entropy(bot_hours[bot_hours > 0]) > 0.9 * np.log(24)
    local = humans[C.TS] + pd.to_timedelta(humans["utc_offset_minutes"], unit="m")
    human_hours = local.dt.hour.value_counts()
    night = lambda h: h.loc[h.index.isin([2, 3, 4, 5])].sum() / h.sum()  # noqa: E731
    assert night(bot_hours) > 2 * night(human_hours)
    entropy = lambda f: f.groupby(C.USER_ID)[C.ITEM_ID].apply(  # noqa: E731
        lambda s: _entropy(s.value_counts())
    )
    heavy = humans[C.USER_ID].value_counts()
    heavy_humans = humans[humans[C.USER_ID].isin(heavy[heavy >= 50].index)]
    assert entropy(bots).median() < 0.75 * entropy(heavy_humans).median()
    assert entropy(bots).max() <= np.log(10) + 1e-9
