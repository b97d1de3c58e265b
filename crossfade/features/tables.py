"""Batch feature tables: daily point-in-time snapshots of listener, item and artist stats.

Each function takes lake frames (contract columns) and returns one row per entity and
snapshot day, stamped `event_timestamp` = start of that UTC day and computed only from events
strictly before it. Pure pandas/numpy: the same code runs in a flow, a test or a Dask task.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.features import catalog
from crossfade.features.catalog import CREATED, EVENT_TIMESTAMP
from crossfade.features.windows import (
    daily_counts,
    daily_counts_by,
    day_numbers,
    safe_ratio,
    shares,
    snapshot_times,
    window_sums,
)


def _codes(values: pd.Series, domain: tuple[str, ...]) -> np.ndarray:
    index = {v: i for i, v in enumerate(domain)}
    return values.map(index).fillna(-1).to_numpy(dtype=np.int64)


def _long(
    keys: pd.Index, key_name: str, first_day: date, n_days: int, columns: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Flatten [entity, snapshot] arrays into rows of (key, event_timestamp, features...)."""
    times = pd.DatetimeIndex(snapshot_times(first_day, n_days))
    n_entities = len(keys)
    frame = pd.DataFrame(
        {
            key_name: np.repeat(keys.to_numpy(), n_days),
            EVENT_TIMESTAMP: np.tile(times.to_numpy(), n_entities),
        }
    )
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    for name, values in columns.items():
        if values.ndim == 3:
            rows = list(values.reshape(n_entities * n_days, -1).astype(np.float32))
            frame[name] = pd.Series(rows, index=frame.index, dtype=object)
        else:
            frame[name] = values.reshape(-1)
    frame[CREATED] = pd.Timestamp(datetime.now(UTC))
    return frame


def _window(events: pd.DataFrame) -> tuple[date, int]:
    days = events[C.TS].dt.floor("D")
    first, last = days.min().date(), days.max().date()
    return first, (last - first).days + 1


def user_features(events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """Listener stats over 7 and 28 days, one row per listener and snapshot day."""
    first_day, n_days = _window(events)
    keys = pd.Index(users[C.USER_ID].unique())
    codes = keys.get_indexer(pd.Index(events[C.USER_ID]))
    known = codes >= 0
    ev = events.loc[known]
    codes = codes[known]
    days = day_numbers(ev[C.TS], first_day)
    n = len(keys)
    meta = items.set_index(C.ITEM_ID)
    genre = _codes(ev[C.ITEM_ID].map(meta[C.GENRE]), D.GENRES)
    language = _codes(ev[C.ITEM_ID].map(meta[C.LANGUAGE]), D.LANGUAGES)
    artist = ev[C.ITEM_ID].map(meta[C.ARTIST_ID])

    plays = daily_counts(codes, days, n, n_days)
    skips = daily_counts(codes, days, n, n_days, ev[C.SKIPPED].to_numpy(dtype=float))
    saves = daily_counts(codes, days, n, n_days, ev[C.SAVED].to_numpy(dtype=float))
    done = daily_counts(
        codes, days, n, n_days, (ev[C.REASON_END] == "trackdone").to_numpy(dtype=float)
    )
    plays7, plays28 = window_sums(plays, 7), window_sums(plays, 28)
    by_genre = window_sums(daily_counts_by(codes, days, genre, n, n_days, len(D.GENRES)), 28)
    by_lang = window_sums(daily_counts_by(codes, days, language, n, n_days, len(D.LANGUAGES)), 28)
    hours = ev[C.TS].dt.hour.to_numpy(dtype=np.int64)
    by_hour = window_sums(daily_counts_by(codes, days, hours, n, n_days, 24), 28)
    device = _codes(ev[C.DEVICE], D.DEVICES)
    by_device = window_sums(daily_counts_by(codes, days, device, n, n_days, len(D.DEVICES)), 28)

    columns = {
        "user_plays_7d": plays7.astype(np.int64),
        "user_plays_28d": plays28.astype(np.int64),
        "user_skip_rate_7d": safe_ratio(window_sums(skips, 7), plays7),
        "user_skip_rate_28d": safe_ratio(window_sums(skips, 28), plays28),
        "user_completion_rate_28d": safe_ratio(window_sums(done, 28), plays28),
        "user_save_rate_28d": safe_ratio(window_sums(saves, 28), plays28),
        "user_distinct_artists_28d": _distinct_in_window(codes, days, artist, n, n_days, 28),
        "user_genre_affinity_28d": shares(by_genre),
        "user_language_affinity_28d": shares(by_lang),
        "user_active_hours_28d": shares(by_hour),
        "user_device_mix_28d": shares(by_device),
    }
    frame = _long(keys, C.USER_ID, first_day, n_days, columns)
    profile = users.drop_duplicates(C.USER_ID, keep="last").set_index(C.USER_ID)
    frame["user_tier"] = frame[C.USER_ID].map(profile[C.TIER])
    frame["user_country"] = frame[C.USER_ID].map(profile[C.COUNTRY])
    frame["user_age_bucket"] = frame[C.USER_ID].map(profile[C.AGE_BUCKET])
    signup = pd.to_datetime(frame[C.USER_ID].map(profile[C.SIGNUP_DATE])).dt.tz_localize("UTC")
    frame["user_days_since_signup"] = (
        (frame[EVENT_TIMESTAMP] - signup).dt.days.clip(lower=0).astype(np.int64)
    )
    # A listener who had not signed up yet has no snapshot at that time.
    return frame.loc[frame[EVENT_TIMESTAMP] > signup].reset_index(drop=True)


def _distinct_in_window(
    codes: np.ndarray, days: np.ndarray, other: pd.Series, n: int, n_days: int, window: int
) -> np.ndarray:
    """Distinct values of `other` per entity in each trailing window (e.g. distinct artists)."""
    pairs = pd.DataFrame({"e": codes, "d": days, "o": pd.factorize(other)[0]})
    # Last day each (entity, other) pair was seen on or before each day is what matters:
    # count pairs whose most recent sighting falls inside the window.
    firsts = pairs.drop_duplicates(["e", "d", "o"])
    out = np.zeros((n, n_days), dtype=np.int64)
    for snapshot in range(1, n_days + 1):
        seen = firsts[(firsts["d"] < snapshot) & (firsts["d"] >= snapshot - window)]
        counts = seen.drop_duplicates(["e", "o"])["e"].value_counts()
        out[counts.index.to_numpy(), snapshot - 1] = counts.to_numpy()
    return out


def item_features(events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Item stats (plays, popularity, per-market plays, rates, content), per item and snapshot."""
    first_day, n_days = _window(events)
    keys = pd.Index(items[C.ITEM_ID].unique())
    codes = keys.get_indexer(pd.Index(events[C.ITEM_ID]))
    ev = events.loc[codes >= 0]
    codes = codes[codes >= 0]
    days = day_numbers(ev[C.TS], first_day)
    n = len(keys)
    plays = daily_counts(codes, days, n, n_days)
    plays7, plays28 = window_sums(plays, 7), window_sums(plays, 28)
    skips = window_sums(daily_counts(codes, days, n, n_days, ev[C.SKIPPED].to_numpy(float)), 28)
    saves = window_sums(daily_counts(codes, days, n, n_days, ev[C.SAVED].to_numpy(float)), 28)
    done = window_sums(
        daily_counts(codes, days, n, n_days, (ev[C.REASON_END] == "trackdone").to_numpy(float)),
        28,
    )
    market = _codes(ev[C.COUNTRY], D.MARKETS)
    by_market = window_sums(daily_counts_by(codes, days, market, n, n_days, len(D.MARKETS)), 28)
    # Percentile of 28-day plays among all items at each snapshot (ties share the mean rank).
    popularity = (
        pd.DataFrame(plays28).rank(axis=0, pct=True, method="average").to_numpy(np.float32)
        if n > 1
        else np.ones_like(plays28, dtype=np.float32)
    )
    columns = {
        "item_plays_7d": plays7.astype(np.int64),
        "item_plays_28d": plays28.astype(np.int64),
        "item_popularity_28d": popularity,
        "item_market_plays_28d": by_market,
        "item_skip_rate_28d": safe_ratio(skips, plays28),
        "item_save_rate_28d": safe_ratio(saves, plays28),
        "item_completion_rate_28d": safe_ratio(done, plays28),
    }
    frame = _long(keys, C.ITEM_ID, first_day, n_days, columns)
    meta = items.drop_duplicates(C.ITEM_ID, keep="last").set_index(C.ITEM_ID)
    release = pd.to_datetime(frame[C.ITEM_ID].map(meta[C.RELEASE_DATE])).dt.tz_localize("UTC")
    frame["item_days_since_release"] = (frame[EVENT_TIMESTAMP] - release).dt.days.astype(np.int64)
    frame["item_duration_ms"] = frame[C.ITEM_ID].map(meta[C.DURATION_MS]).astype(np.int64)
    frame["item_explicit"] = frame[C.ITEM_ID].map(meta[C.EXPLICIT]).astype(bool)
    frame["item_content_type"] = frame[C.ITEM_ID].map(meta[C.CONTENT_TYPE])
    frame["item_genre"] = frame[C.ITEM_ID].map(meta[C.GENRE])
    frame["item_language"] = frame[C.ITEM_ID].map(meta[C.LANGUAGE])
    for feature in C.AUDIO_FEATURES:
        # Imported catalogues may lack audio features: the documented default stands in.
        default = float(catalog.BY_NAME[f"item_{feature}"].default)  # type: ignore[arg-type]
        values = frame[C.ITEM_ID].map(meta[feature]).astype(np.float32)
        frame[f"item_{feature}"] = values.fillna(default).astype(np.float32)
    return frame


def artist_features(
    events: pd.DataFrame, items: pd.DataFrame, artists: pd.DataFrame
) -> pd.DataFrame:
    """Artist reach (distinct listeners, growth) and follows, per artist and snapshot."""
    first_day, n_days = _window(events)
    keys = pd.Index(artists[C.ARTIST_ID].unique())
    artist = events[C.ITEM_ID].map(items.set_index(C.ITEM_ID)[C.ARTIST_ID])
    codes = keys.get_indexer(pd.Index(artist))
    ev = events.loc[codes >= 0]
    codes = codes[codes >= 0]
    days = day_numbers(ev[C.TS], first_day)
    n = len(keys)
    listeners7 = _distinct_in_window(codes, days, ev[C.USER_ID], n, n_days, 7)
    listeners28 = _distinct_in_window(codes, days, ev[C.USER_ID], n, n_days, 28)
    listeners_prev7 = np.zeros_like(listeners7)
    listeners_prev7[:, 7:] = listeners7[:, :-7]
    follows = daily_counts(codes, days, n, n_days, ev[C.FOLLOWED_ARTIST].to_numpy(float))
    growth = np.where(
        listeners_prev7 > 0, listeners7 / np.maximum(listeners_prev7, 1) - 1.0, 0.0
    ).astype(np.float32)
    columns = {
        "artist_listeners_7d": listeners7,
        "artist_listeners_28d": listeners28,
        "artist_listener_growth_7d": growth,
        "artist_followers": window_sums(follows, n_days).astype(np.int64),
    }
    return _long(keys, C.ARTIST_ID, first_day, n_days, columns)
