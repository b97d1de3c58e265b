"""One day's plays and ad impressions as column arrays, and their conversion to Arrow tables.

Sessions and bots fill these containers with integer codes; only here do codes become the
contract's strings (a lookup `take` in Arrow, no Python loop), and ids get assigned.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data.contracts import TS_TYPE, conform
from crossfade.data.simulator.ids import counter_ids
from crossfade.data.simulator.world import World

T = TypeVar("T", "DayEvents", "DayAds")


@dataclass
class DayEvents:
    """Plays (one row each) with codes into the domain tuples."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    ts_us: np.ndarray  # int64 microseconds since the epoch (UTC)
    ms_played: np.ndarray  # int64
    reason_start: np.ndarray  # int8
    reason_end: np.ndarray  # int8
    skipped: np.ndarray  # bool
    saved: np.ndarray  # bool
    added_to_playlist: np.ndarray  # bool
    followed_artist: np.ndarray  # bool
    replay: np.ndarray  # bool
    context: np.ndarray  # int8
    device: np.ndarray  # int8
    platform: np.ndarray  # int8
    shuffle: np.ndarray  # bool
    offline: np.ndarray  # bool
    session: np.ndarray  # int64 session number within the day

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class DayAds:
    """Ad impressions (one row each)."""

    user: np.ndarray  # int32
    ts_us: np.ndarray  # int64
    session: np.ndarray  # int64 session number within the day
    ad: np.ndarray  # int32 index into the ad catalogue
    duration_ms: np.ndarray  # int64
    clicked: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.user)


def concat(parts: list[T]) -> T:
    """Concatenate containers of the same kind, column by column."""
    kind = type(parts[0])
    return kind(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(kind)}
    )


def empty(kind: type[T]) -> T:
    """An empty container of `kind` with the right dtypes."""
    dtypes: dict[str, Any] = {
        "user": np.int32,
        "item": np.int32,
        "ad": np.int32,
        "ts_us": np.int64,
        "ms_played": np.int64,
        "duration_ms": np.int64,
        "session": np.int64,
        "reason_start": np.int8,
        "reason_end": np.int8,
        "context": np.int8,
        "device": np.int8,
        "platform": np.int8,
    }
    return kind(**{f.name: np.zeros(0, dtype=dtypes.get(f.name, bool)) for f in fields(kind)})


class Lookups:
    """Arrow arrays of the world's ids and codes, built once per run, reused every day."""

    def __init__(self, world: World) -> None:
        lis, cat = world.listeners, world.catalogue
        self.user_ids = pa.array(lis.user_ids, pa.string())
        self.item_ids = pa.array(cat.item_ids, pa.string())
        self.ad_ids = pa.array(cat.ad_ids, pa.string())
        self.user_country = lis.country
        self.user_tier = lis.tier
        self.tag = world.tag

    @staticmethod
    def decode(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
        """Codes into a domain tuple -> the tuple's strings."""
        return pa.array(values, pa.string()).take(pa.array(codes.astype(np.int32)))

    def session_ids(self, day: int, session: np.ndarray) -> pa.Array:
        """Session ids unique within the batch: seeded tag, day, number (formatted once per
        session, then taken per row)."""
        count = int(session.max()) + 1 if len(session) else 0
        names = counter_ids(f"s{self.tag}{day:03d}", 0, count, 7)
        return names.take(pa.array(session.astype(np.int64)))

    def events_table(self, day: int, ev: DayEvents) -> pa.Table:
        """The events contract table of one day's plays, ids numbered in generation order."""
        table = pa.table(
            {
                C.EVENT_ID: counter_ids(f"v{self.tag}{day:03d}", 0, len(ev), 8),
                C.USER_ID: self.user_ids.take(pa.array(ev.user)),
                C.ITEM_ID: self.item_ids.take(pa.array(ev.item)),
                C.TS: pa.array(ev.ts_us, TS_TYPE),
                C.MS_PLAYED: pa.array(ev.ms_played),
                C.REASON_START: self.decode(D.REASONS_START, ev.reason_start),
                C.REASON_END: self.decode(D.REASONS_END, ev.reason_end),
                C.SKIPPED: pa.array(ev.skipped),
                C.SAVED: pa.array(ev.saved),
                C.ADDED_TO_PLAYLIST: pa.array(ev.added_to_playlist),
                C.FOLLOWED_ARTIST: pa.array(ev.followed_artist),
                C.REPLAY: pa.array(ev.replay),
                C.CONTEXT_TYPE: self.decode(D.CONTEXT_TYPES, ev.context),
                C.DEVICE: self.decode(D.DEVICES, ev.device),
                C.PLATFORM: self.decode(D.PLATFORMS, ev.platform),
                C.COUNTRY: self.decode(D.MARKETS, self.user_country[ev.user]),
                C.TIER: self.decode(D.TIERS, self.user_tier[ev.user]),
                C.SHUFFLE: pa.array(ev.shuffle),
                C.OFFLINE: pa.array(ev.offline),
                C.SESSION_ID: self.session_ids(day, ev.session),
            }
        )
        return conform(table, "events")

    def ads_table(self, day: int, ads: DayAds) -> pa.Table:
        """The ad_impressions contract table of one day's ad breaks."""
        table = pa.table(
            {
                C.IMPRESSION_ID: counter_ids(f"i{self.tag}{day:03d}", 0, len(ads), 7),
                C.USER_ID: self.user_ids.take(pa.array(ads.user)),
                C.TS: pa.array(ads.ts_us, TS_TYPE),
                C.SESSION_ID: self.session_ids(day, ads.session),
                C.AD_ID: self.ad_ids.take(pa.array(ads.ad)),
                C.DURATION_MS: pa.array(ads.duration_ms),
                C.CLICKED: pa.array(ads.clicked),
                C.COUNTRY: self.decode(D.MARKETS, self.user_country[ads.user]),
            }
        )
        return conform(table, "ad_impressions")
