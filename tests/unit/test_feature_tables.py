"""Feature tables: known answers on a tiny hand-built lake, and no look-ahead."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.features import catalog
from crossfade.features.context import request_context
from crossfade.features.tables import artist_features, item_features, user_features
from crossfade.features.windows import window_sums

DAY0 = date(2026, 3, 2)


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.ITEM_ID: ["i1", "i2", "i3"],
            C.ARTIST_ID: ["a1", "a1", "a2"],
            C.GENRE: ["pop", "rock", "jazz"],
            C.LANGUAGE: ["en", "en", "sv"],
            C.RELEASE_DATE: [date(2026, 1, 1), date(2026, 3, 3), date(2020, 1, 1)],
            C.DURATION_MS: [200_000, 180_000, 240_000],
            C.EXPLICIT: [False, True, False],
            C.CONTENT_TYPE: ["track"] * 3,
            **{f: [0.5, 0.6, None] for f in C.AUDIO_FEATURES},
        }
    )


def _users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.USER_ID: ["u1", "u2"],
            C.TIER: ["premium", "ad_supported"],
            C.COUNTRY: ["SE", "US"],
            C.AGE_BUCKET: ["25-34", "13-17"],
            C.SIGNUP_DATE: [date(2025, 1, 1), date(2026, 3, 3)],
        }
    )


def _events(rows: list[tuple[str, str, str, bool, bool, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=[C.USER_ID, C.ITEM_ID, C.TS, C.SKIPPED, C.SAVED, C.REASON_END]
    )
    frame[C.TS] = pd.to_datetime(frame[C.TS], utc=True)
    frame[C.DEVICE] = "phone"
    frame[C.COUNTRY] = frame[C.USER_ID].map({"u1": "SE", "u2": "US"})
    frame[C.FOLLOWED_ARTIST] = False
    return frame


EVENTS = _events(
    [
        ("u1", "i1", "2026-03-02 08:00", False, True, "trackdone"),
        ("u1", "i2", "2026-03-02 09:00", True, False, "fwdbtn"),
        ("u1", "i3", "2026-03-03 21:00", False, False, "trackdone"),
        ("u2", "i1", "2026-03-04 10:00", True, False, "fwdbtn"),
    ]
)


def test_user_snapshots_only_see_the_past() -> None:
    table = user_features(EVENTS, _items(), _users()).set_index(
        [C.USER_ID, catalog.EVENT_TIMESTAMP]
    )
    at = lambda day: pd.Timestamp(day, tz="UTC")  # noqa: E731
    first = table.loc[("u1", at("2026-03-03"))]
    assert first["user_plays_7d"] == 2  # the 03-03 21:00 play is not visible yet
    assert first["user_skip_rate_7d"] == pytest.approx(0.5)
    assert first["user_save_rate_28d"] == pytest.approx(0.5)
    assert first["user_distinct_artists_28d"] == 1
    genres = np.asarray(first["user_genre_affinity_28d"])
    assert genres.sum() == pytest.approx(1.0)
    assert genres[catalog.BY_NAME["user_genre_affinity_28d"].length - 1] == 0  # "unknown"
    second = table.loc[("u1", at("2026-03-04"))]
    assert second["user_plays_7d"] == 3
    assert second["user_distinct_artists_28d"] == 2
    hours = np.asarray(second["user_active_hours_28d"])
    assert hours[[8, 9, 21]] == pytest.approx([1 / 3] * 3)


def test_listeners_have_no_snapshot_before_signup() -> None:
    table = user_features(EVENTS, _items(), _users())
    u2 = table[table[C.USER_ID] == "u2"]
    assert u2[catalog.EVENT_TIMESTAMP].min() > pd.Timestamp("2026-03-03", tz="UTC")
    assert (u2["user_age_bucket"] == "13-17").all()


def test_item_and_artist_snapshots() -> None:
    items = item_features(EVENTS, _items()).set_index([C.ITEM_ID, catalog.EVENT_TIMESTAMP])
    last = pd.Timestamp("2026-03-05", tz="UTC")
    assert items.loc[("i1", last), "item_plays_28d"] == 2
    assert items.loc[("i1", last), "item_skip_rate_28d"] == pytest.approx(0.5)
    assert items.loc[("i1", last), "item_popularity_28d"] == pytest.approx(1.0)
    market = np.asarray(items.loc[("i1", last), "item_market_plays_28d"])
    assert market.sum() == 2
    assert items.loc[("i2", pd.Timestamp("2026-03-03", tz="UTC")), "item_days_since_release"] == 0
    artists = artist_features(EVENTS, _items(), pd.DataFrame({C.ARTIST_ID: ["a1", "a2"]}))
    a1 = artists.set_index([C.ARTIST_ID, catalog.EVENT_TIMESTAMP]).loc[("a1", last)]
    assert a1["artist_listeners_28d"] == 2


def test_catalogue_columns_match_the_tables() -> None:
    users = user_features(EVENTS, _items(), _users())
    items = item_features(EVENTS, _items())
    for view, frame in ((catalog.USER_VIEW, users), (catalog.ITEM_VIEW, items)):
        expected = {f.name for f in catalog.view_features(view)}
        assert expected <= set(frame.columns)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=30),
    st.integers(1, 10),
)
def test_window_sums_match_a_naive_loop(counts: list[int], window: int) -> None:
    daily = np.array([counts], dtype=float)
    got = window_sums(daily, window)[0]
    for snapshot in range(1, len(counts) + 1):
        assert got[snapshot - 1] == sum(counts[max(0, snapshot - window) : snapshot])


def test_request_context_is_local_time_and_domain_safe() -> None:
    inputs = pd.DataFrame(
        {
            "request_ts": pd.to_datetime(["2026-03-07 23:30", "2026-03-02 12:00"], utc=True),
            "utc_offset_minutes": [60, -300],
            "device": ["phone", "toaster"],
            "platform": ["ios", "android"],
        }
    )
    out = request_context(inputs)
    assert out["ctx_hour_local"].tolist() == [0, 7]
    assert out["ctx_day_of_week_local"].tolist() == [6, 0]  # Sunday in Stockholm, Monday in NY
    assert out["ctx_is_weekend"].tolist() == [1, 0]
    assert out["ctx_device"].tolist() == ["phone", "unknown"]
