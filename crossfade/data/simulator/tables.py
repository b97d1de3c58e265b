"""The observable dimension tables of a world (users, artists, items, onboarding).

Only what a streaming service would log goes here: no factors, biases, bot labels or parental
filters (those stay in the ground truth).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data.contracts import TS_TYPE, conform
from crossfade.data.simulator.catalogue import NULL_DAY
from crossfade.data.simulator.ids import counter_ids
from crossfade.data.simulator.world import World

_EPOCH = np.datetime64("1970-01-01", "D")


def _dates(world: World, offsets: np.ndarray) -> pa.Array:
    """Day offsets from the window start -> date32 (NULL_DAY -> null)."""
    start = (np.datetime64(world.start, "D") - _EPOCH).astype(np.int64)
    days = (start + offsets.astype(np.int64)).astype(np.int32)
    return pa.array(days, pa.int32(), mask=offsets == NULL_DAY).cast(pa.date32())


def _decode(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(codes.astype(np.int32)))


def users_table(world: World) -> pa.Table:
    """One row per listener (humans and bots alike)."""
    lis = world.listeners
    table = pa.table(
        {
            C.USER_ID: pa.array(lis.user_ids, pa.string()),
            C.TIER: _decode(D.TIERS, lis.tier),
            C.COUNTRY: _decode(D.MARKETS, lis.country),
            C.AGE_BUCKET: _decode(D.AGE_BUCKETS, lis.age),
            C.LANGUAGE: _decode(D.LANGUAGES, lis.language),
            C.SIGNUP_DATE: _dates(world, lis.signup_day),
        }
    )
    return conform(table, "users")


def artists_table(world: World) -> pa.Table:
    """One row per artist or podcast publisher."""
    cat = world.catalogue
    table = pa.table(
        {
            C.ARTIST_ID: pa.array(cat.artist_ids, pa.string()),
            C.ARTIST_NAME: pa.array(cat.artist_names, pa.string()),
            C.COUNTRY: _decode(D.MARKETS, cat.artist_country),
            C.GENRE: _decode(D.GENRES, cat.artist_genre),
            C.DEBUT_DATE: _dates(world, cat.artist_debut),
        }
    )
    return conform(table, "artists")


def _market_strings(masks: np.ndarray) -> pa.Array:
    """Bit masks over MARKETS -> comma-separated market codes (one string per distinct mask)."""
    unique, inverse = np.unique(masks, return_inverse=True)
    texts = [",".join(m for i, m in enumerate(D.MARKETS) if (int(u) >> i) & 1) for u in unique]
    return pa.array(texts, pa.string()).take(pa.array(inverse.astype(np.int32)))


def items_table(world: World) -> pa.Table:
    """One row per track or episode, with audio features (null for episodes)."""
    cat = world.catalogue
    audio = {
        name: pa.array(cat.item_audio[:, k], pa.float32(), mask=np.isnan(cat.item_audio[:, k]))
        for k, name in enumerate(C.AUDIO_FEATURES)
    }
    content = np.where(cat.item_is_episode, 1, 0)
    table = pa.table(
        {
            C.ITEM_ID: pa.array(cat.item_ids, pa.string()),
            C.CONTENT_TYPE: _decode(D.CONTENT_TYPES, content),
            C.TITLE: pa.array(cat.item_titles, pa.string()),
            C.ARTIST_ID: pa.array(cat.artist_ids, pa.string()).take(pa.array(cat.item_artist)),
            C.ALBUM_ID: pa.array(cat.item_album_ids, pa.string()),
            C.GENRE: _decode(D.GENRES, cat.item_genre),
            C.LANGUAGE: _decode(D.LANGUAGES, cat.item_language),
            C.RELEASE_DATE: _dates(world, cat.item_release_day),
            C.DURATION_MS: pa.array(cat.item_duration_ms, pa.int64()),
            C.EXPLICIT: pa.array(cat.item_explicit),
            **audio,
            C.TAGS: pa.array(cat.item_tags, pa.string()),
            C.AVAILABLE_MARKETS: _market_strings(cat.item_markets),
        }
    )
    return conform(table, "items")


def onboarding_table(world: World) -> pa.Table:
    """Artists new listeners picked at sign-up, in order of sign-up."""
    onb = world.onboarding
    order = np.lexsort((np.arange(len(onb.user)), onb.picked_sec))
    start_us = world.day_start_us(0)
    table = pa.table(
        {
            "pick_id": counter_ids(f"p{world.tag}", 0, len(order), 7),
            C.USER_ID: pa.array(world.listeners.user_ids, pa.string()).take(
                pa.array(onb.user[order])
            ),
            C.ARTIST_ID: pa.array(world.catalogue.artist_ids, pa.string()).take(
                pa.array(onb.artist[order])
            ),
            C.PICKED_AT: pa.array(start_us + onb.picked_sec[order] * 1_000_000, TS_TYPE),
        }
    )
    return conform(table, "onboarding")
