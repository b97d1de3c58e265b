"""The batch feature tables of `tables.py`, with the pass over events distributed by Dask.

Same inputs and the same output rows as `crossfade.features.tables` (the cluster-profile
tests hold them equal), split differently:

1. Dask reads the committed event partitions of the lake (`read_events`), encodes them per
   partition (entity codes, day numbers, domain codes) and reduces them to small per-(entity,
   day[, group]) sums with groupbys; distinct counts over trailing windows shuffle the
   de-duplicated (entity, day, value) triples by entity and count per partition.
2. The client turns those sums into dense [entity, day] arrays and applies the same window
   arithmetic (`windows.py`) as the single-process path, then returns pandas frames.

Step 1 is O(events) and runs on the workers; step 2 is O(entities x days), which is the size of
the output anyway. Dimension tables (users, items, artists) are read with pandas: they are
small next to events and every worker needs their lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.features import catalog
from crossfade.features.catalog import CREATED, EVENT_TIMESTAMP
from crossfade.features.windows import (
    day_numbers,
    safe_ratio,
    shares,
    snapshot_times,
    window_sums,
)

EVENT_COLUMNS = [
    C.USER_ID,
    C.ITEM_ID,
    C.TS,
    C.SKIPPED,
    C.SAVED,
    C.REASON_END,
    C.DEVICE,
    C.COUNTRY,
    C.FOLLOWED_ARTIST,
]
SUMS = ["play", "skip", "save", "done", "follow"]


def read_events(lake_dir: Path, columns: list[str] | None = None) -> dd.DataFrame:
    """Committed event partitions of the lake as a Dask dataframe (one partition per file).

    Only files listed in a batch manifest are read, as `lake.read_lake_table` does, so a batch
    that is being published is never half-visible.
    """
    files = [
        str(lake_dir / rel)
        for manifest in lake.manifests(lake_dir)
        for rel in manifest["files"].get("events", [])
    ]
    if not files:
        raise ValueError(
            f"the lake at {lake_dir} has no published events: ingest a batch first "
            "(`crossfade data ingest`)"
        )
    return dd.read_parquet(files, columns=columns or EVENT_COLUMNS)


@dataclass(frozen=True)
class _Lookups:
    """Id -> code maps every partition needs (broadcast with the task graph)."""

    first_day: date
    users: pd.Index
    items: pd.Index
    artists: pd.Index
    item_artist: pd.Series  # item id -> artist id
    item_artist_any: pd.Series  # item id -> code among all artists of the catalogue
    item_genre: pd.Series
    item_language: pd.Series


def _domain_codes(values: pd.Series, domain: tuple[str, ...]) -> np.ndarray:
    index = {v: i for i, v in enumerate(domain)}
    return values.map(index).fillna(-1).to_numpy(dtype=np.int64)


def _encode(part: pd.DataFrame, lk: _Lookups) -> pd.DataFrame:
    """One partition of events as integer codes and 0/1 sums (what the groupbys reduce)."""
    items = part[C.ITEM_ID].astype(object)
    artist = items.map(lk.item_artist)
    return pd.DataFrame(
        {
            "u": lk.users.get_indexer(pd.Index(part[C.USER_ID].astype(object))),
            "i": lk.items.get_indexer(pd.Index(items)),
            "a": lk.artists.get_indexer(pd.Index(artist)),
            "artist_any": items.map(lk.item_artist_any).fillna(-1).to_numpy(np.int64),
            "listener": part[C.USER_ID].astype(object),
            "day": day_numbers(part[C.TS], lk.first_day),
            "hour": part[C.TS].dt.hour.to_numpy(dtype=np.int64),
            "genre": _domain_codes(items.map(lk.item_genre), D.GENRES),
            "language": _domain_codes(items.map(lk.item_language), D.LANGUAGES),
            "device": _domain_codes(part[C.DEVICE].astype(object), D.DEVICES),
            "market": _domain_codes(part[C.COUNTRY].astype(object), D.MARKETS),
            "play": np.ones(len(part), dtype=np.int64),
            "skip": part[C.SKIPPED].to_numpy(dtype=np.int64),
            "save": part[C.SAVED].to_numpy(dtype=np.int64),
            "done": (part[C.REASON_END] == "trackdone").to_numpy(dtype=np.int64),
            "follow": part[C.FOLLOWED_ARTIST].to_numpy(dtype=np.int64),
        },
        index=part.index,
    )


def _window_distinct(
    part: pd.DataFrame, entity: str, other: str, n_days: int, windows: tuple[int, ...]
) -> pd.DataFrame:
    """Distinct `other` values per entity in trailing windows, for the entities of a partition."""
    part = part.drop_duplicates([entity, "day", other])
    rows = []
    for snapshot in range(1, n_days + 1):
        counts = {}
        for window in windows:
            seen = part[(part["day"] < snapshot) & (part["day"] >= snapshot - window)]
            counts[f"w{window}"] = seen.drop_duplicates([entity, other])[entity].value_counts()
        block = pd.DataFrame(counts).fillna(0).astype(np.int64)
        block.index.name = entity
        rows.append(block.reset_index().assign(snapshot=snapshot - 1))
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    columns = [entity, "snapshot", *(f"w{w}" for w in windows)]
    if out.empty:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in columns})
    return out[columns].astype(np.int64)


def _distinct(
    enc: dd.DataFrame, entity: str, other: str, n_days: int, windows: tuple[int, ...]
) -> dd.DataFrame:
    """Per-partition de-duplication, a shuffle by entity, then windowed distinct counts."""
    triples = enc[enc[entity] >= 0][[entity, "day", other]]
    triples = triples.map_partitions(lambda p: p.drop_duplicates()).shuffle(on=entity)
    meta = pd.DataFrame(
        {c: pd.Series(dtype=np.int64) for c in [entity, "snapshot", *(f"w{w}" for w in windows)]}
    )
    return triples.map_partitions(
        _window_distinct, entity, other, n_days, windows, meta=meta, align_dataframes=False
    )


def _lazy_aggregates(enc: dd.DataFrame, n_days: int) -> dict[str, Any]:
    """Every reduction the three tables need, as lazy Dask objects (computed together)."""
    users = enc[enc["u"] >= 0]
    items = enc[enc["i"] >= 0]
    artists = enc[enc["a"] >= 0]
    out: dict[str, Any] = {
        "user_sums": users.groupby(["u", "day"])[SUMS].sum(),
        "item_sums": items.groupby(["i", "day"])[SUMS].sum(),
        "artist_sums": artists.groupby(["a", "day"])[SUMS].sum(),
        "user_artists": _distinct(enc, "u", "artist_any", n_days, (28,)),
        "artist_listeners": _distinct(enc, "a", "listener", n_days, (7, 28)),
        "item_market": items[items["market"] >= 0].groupby(["i", "day", "market"]).size(),
    }
    for group in ("genre", "language", "hour", "device"):
        rows = users[users[group] >= 0]
        out[f"user_{group}"] = rows.groupby(["u", "day", group]).size()
    return out


def _dense(
    frame: pd.Series | pd.DataFrame, n: int, n_days: int, n_groups: int | None = None
) -> np.ndarray:
    """A (code, day[, group]) -> value reduction as a dense [entity, day(, group)] array."""
    index = frame.index
    codes = index.get_level_values(0).to_numpy(np.int64)
    days = index.get_level_values(1).to_numpy(np.int64)
    values = frame.to_numpy(dtype=np.float64)
    if n_groups is None:
        out = np.zeros((n, n_days), dtype=np.float64)
        out[codes, days] = values
        return out
    cube = np.zeros((n, n_days, n_groups), dtype=np.float32)
    cube[codes, days, index.get_level_values(2).to_numpy(np.int64)] = values
    return cube


def _windowed_distinct(frame: pd.DataFrame, entity: str, window: int, n: int, n_days: int) -> Any:
    out = np.zeros((n, n_days), dtype=np.int64)
    out[frame[entity].to_numpy(np.int64), frame["snapshot"].to_numpy(np.int64)] = frame[
        f"w{window}"
    ].to_numpy(np.int64)
    return out


def _long(
    keys: pd.Index, key_name: str, first_day: date, n_days: int, columns: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Rows of (key, event_timestamp, features...) from [entity, snapshot(, k)] arrays."""
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


def _user_table(
    got: dict[str, Any], lk: _Lookups, n_days: int, users: pd.DataFrame
) -> pd.DataFrame:
    n = len(lk.users)
    daily = {s: _dense(got["user_sums"][s], n, n_days) for s in SUMS}
    plays7, plays28 = window_sums(daily["play"], 7), window_sums(daily["play"], 28)
    groups = {"genre": len(D.GENRES), "language": len(D.LANGUAGES), "hour": 24}
    groups["device"] = len(D.DEVICES)
    by = {g: window_sums(_dense(got[f"user_{g}"], n, n_days, k), 28) for g, k in groups.items()}
    columns = {
        "user_plays_7d": plays7.astype(np.int64),
        "user_plays_28d": plays28.astype(np.int64),
        "user_skip_rate_7d": safe_ratio(window_sums(daily["skip"], 7), plays7),
        "user_skip_rate_28d": safe_ratio(window_sums(daily["skip"], 28), plays28),
        "user_completion_rate_28d": safe_ratio(window_sums(daily["done"], 28), plays28),
        "user_save_rate_28d": safe_ratio(window_sums(daily["save"], 28), plays28),
        "user_distinct_artists_28d": _windowed_distinct(got["user_artists"], "u", 28, n, n_days),
        "user_genre_affinity_28d": shares(by["genre"]),
        "user_language_affinity_28d": shares(by["language"]),
        "user_active_hours_28d": shares(by["hour"]),
        "user_device_mix_28d": shares(by["device"]),
    }
    frame = _long(lk.users, C.USER_ID, lk.first_day, n_days, columns)
    profile = users.drop_duplicates(C.USER_ID, keep="last").set_index(C.USER_ID)
    frame["user_tier"] = frame[C.USER_ID].map(profile[C.TIER])
    frame["user_country"] = frame[C.USER_ID].map(profile[C.COUNTRY])
    frame["user_age_bucket"] = frame[C.USER_ID].map(profile[C.AGE_BUCKET])
    signup = pd.to_datetime(frame[C.USER_ID].map(profile[C.SIGNUP_DATE])).dt.tz_localize("UTC")
    frame["user_days_since_signup"] = (
        (frame[EVENT_TIMESTAMP] - signup).dt.days.clip(lower=0).astype(np.int64)
    )
    return frame.loc[frame[EVENT_TIMESTAMP] > signup].reset_index(drop=True)


def _item_table(
    got: dict[str, Any], lk: _Lookups, n_days: int, items: pd.DataFrame
) -> pd.DataFrame:
    n = len(lk.items)
    daily = {s: _dense(got["item_sums"][s], n, n_days) for s in SUMS}
    plays7, plays28 = window_sums(daily["play"], 7), window_sums(daily["play"], 28)
    by_market = window_sums(_dense(got["item_market"], n, n_days, len(D.MARKETS)), 28)
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
        "item_skip_rate_28d": safe_ratio(window_sums(daily["skip"], 28), plays28),
        "item_save_rate_28d": safe_ratio(window_sums(daily["save"], 28), plays28),
        "item_completion_rate_28d": safe_ratio(window_sums(daily["done"], 28), plays28),
    }
    frame = _long(lk.items, C.ITEM_ID, lk.first_day, n_days, columns)
    meta = items.drop_duplicates(C.ITEM_ID, keep="last").set_index(C.ITEM_ID)
    release = pd.to_datetime(frame[C.ITEM_ID].map(meta[C.RELEASE_DATE])).dt.tz_localize("UTC")
    frame["item_days_since_release"] = (frame[EVENT_TIMESTAMP] - release).dt.days.astype(np.int64)
    frame["item_duration_ms"] = frame[C.ITEM_ID].map(meta[C.DURATION_MS]).astype(np.int64)
    frame["item_explicit"] = frame[C.ITEM_ID].map(meta[C.EXPLICIT]).astype(bool)
    frame["item_content_type"] = frame[C.ITEM_ID].map(meta[C.CONTENT_TYPE])
    frame["item_genre"] = frame[C.ITEM_ID].map(meta[C.GENRE])
    frame["item_language"] = frame[C.ITEM_ID].map(meta[C.LANGUAGE])
    for feature in C.AUDIO_FEATURES:
        default = float(catalog.BY_NAME[f"item_{feature}"].default)  # type: ignore[arg-type]
        values = frame[C.ITEM_ID].map(meta[feature]).astype(np.float32)
        frame[f"item_{feature}"] = values.fillna(default).astype(np.float32)
    return frame


def _artist_table(got: dict[str, Any], lk: _Lookups, n_days: int) -> pd.DataFrame:
    n = len(lk.artists)
    listeners7 = _windowed_distinct(got["artist_listeners"], "a", 7, n, n_days)
    listeners28 = _windowed_distinct(got["artist_listeners"], "a", 28, n, n_days)
    listeners_prev7 = np.zeros_like(listeners7)
    listeners_prev7[:, 7:] = listeners7[:, :-7]
    follows = _dense(got["artist_sums"]["follow"], n, n_days)
    growth = np.where(
        listeners_prev7 > 0, listeners7 / np.maximum(listeners_prev7, 1) - 1.0, 0.0
    ).astype(np.float32)
    columns = {
        "artist_listeners_7d": listeners7,
        "artist_listeners_28d": listeners28,
        "artist_listener_growth_7d": growth,
        "artist_followers": window_sums(follows, n_days).astype(np.int64),
    }
    return _long(lk.artists, C.ARTIST_ID, lk.first_day, n_days, columns)


def compute_tables(
    events: dd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    artists: pd.DataFrame,
    scheduler: Any = None,
) -> dict[str, pd.DataFrame]:
    """User, item and artist tables (keyed by view name) from Dask events, in one pass.

    `scheduler` is what `dask.compute` takes: a `distributed.Client`, a scheduler name, or
    None for the current default (a client made current, or Dask's local threads).
    """
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack column(s) {missing}: pass the lake's events table")
    lo, hi = dask.compute(events[C.TS].min(), events[C.TS].max(), scheduler=scheduler)
    if pd.isna(lo):
        return {}
    first_day = pd.Timestamp(lo).floor("D").date()
    n_days = (pd.Timestamp(hi).floor("D").date() - first_day).days + 1
    meta = items.set_index(C.ITEM_ID)
    all_artists = pd.Index(items[C.ARTIST_ID].dropna().unique())
    lk = _Lookups(
        first_day=first_day,
        users=pd.Index(users[C.USER_ID].unique()),
        items=pd.Index(items[C.ITEM_ID].unique()),
        artists=pd.Index(artists[C.ARTIST_ID].unique()),
        item_artist=meta[C.ARTIST_ID],
        item_artist_any=pd.Series(
            all_artists.get_indexer(pd.Index(meta[C.ARTIST_ID])), index=meta.index, dtype=np.int64
        ),
        item_genre=meta[C.GENRE],
        item_language=meta[C.LANGUAGE],
    )
    empty = _encode(events._meta, lk)
    enc = events.map_partitions(_encode, lk, meta=empty, align_dataframes=False)
    lazy = _lazy_aggregates(enc, n_days)
    names = list(lazy)
    computed = dask.compute(*(lazy[k] for k in names), scheduler=scheduler)
    got = dict(zip(names, computed, strict=True))
    return {
        catalog.USER_VIEW: _user_table(got, lk, n_days, users),
        catalog.ITEM_VIEW: _item_table(got, lk, n_days, items),
        catalog.ARTIST_VIEW: _artist_table(got, lk, n_days),
    }


def lake_feature_tables(lake_dir: Path, scheduler: Any = None) -> dict[str, pd.DataFrame]:
    """The three feature tables of the published lake, events processed by Dask.

    Returns {} when the lake holds no events (as the single-process flow step does).
    """
    if not any(m["files"].get("events") for m in lake.manifests(lake_dir)):
        return {}
    read = lambda name: lake.read_lake_table(lake_dir, name).to_pandas()  # noqa: E731
    return compute_tables(
        read_events(lake_dir), read("items"), read("users"), read("artists"), scheduler
    )
