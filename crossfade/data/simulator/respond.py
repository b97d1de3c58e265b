"""Online response model: how a simulated listener reacts to a ranked list, for experiments.

The listener walks down the list from the top. Items they cannot play (not released yet on
that day, unavailable in their market, explicit behind a parental filter) are greyed out and
passed over. Each playable item is skipped with the probability of the shared response model
(true affinity, position, context); after each play the listener may leave (more likely after
a skip). Play length, end reasons, saves, playlist adds and follows come from the same
functions the batch simulator uses, so offline logs and online experiments agree.
Ad breaks are not simulated here: the result is events only.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data.contracts import TS_TYPE, conform, contract
from crossfade.data.simulator import behaviour as B
from crossfade.data.simulator import markets as M
from crossfade.data.simulator.sessions import playable
from crossfade.data.simulator.world import World

LEAVE_AFTER_PLAY = 0.05
LEAVE_AFTER_SKIP = 0.12


def respond(
    world: World,
    user_id: str,
    ranked_item_ids: list[str],
    ts: datetime,
    rng: np.random.Generator,
    context: str = "home_shelf",
) -> pa.Table:
    """Events (events contract) of one listener playing `ranked_item_ids` from `ts` on."""
    if ts.tzinfo is None:
        raise ValueError(f"ts {ts.isoformat()} has no time zone; pass an aware UTC datetime")
    if context not in B.CONTEXT or context == "unknown":
        raise ValueError(
            f"unknown context {context!r}; choose one of {', '.join(D.CONTEXT_TYPES[:-1])}"
        )
    lis, cat = world.listeners, world.catalogue
    user = int(world.user_index([user_id])[0])
    items = world.item_index(ranked_item_ids)
    day = (ts.astimezone(UTC).date() - world.start).days
    items = items[playable(world, items, np.full(len(items), user), day)]
    if len(items) == 0:
        return contract("events").empty()

    n = len(items)
    users = np.full(n, user, dtype=np.int64)
    aff = world.latent.affinity_pairs(users, items)
    pos = np.arange(n)
    ctx = np.full(n, B.CONTEXT[context], dtype=np.int8)
    is_ep = cat.item_is_episode[items]
    skipped = rng.random(n) < B.skip_probability(aff, pos, ctx, is_ep)
    leave = rng.random(n) < np.where(skipped, LEAVE_AFTER_SKIP, LEAVE_AFTER_PLAY)
    stop = int(np.argmax(leave)) + 1 if leave.any() else n
    items, aff, pos = items[:stop], aff[:stop], pos[:stop]
    ctx, is_ep, skipped = ctx[:stop], is_ep[:stop], skipped[:stop]
    n = stop

    device = np.full(n, lis.primary_device[user], dtype=np.int8)
    platform = M.platform_of(
        device, np.full(n, lis.phone_os[user]), np.full(n, lis.desktop_os[user])
    )
    cast = np.isin(device, [M.SPEAKER, M.TV])
    last = pos == n - 1
    duration = cat.item_duration_ms[items]
    out = B.play_outcomes(rng, skipped, aff, duration, is_ep, last, cast)
    prev_end = np.concatenate([[0], out.reason_end[:-1]]).astype(np.int8)
    start_reason = B.reason_starts(rng, pos, prev_end, np.zeros(n, dtype=bool), ctx, cast)
    gap = np.where(skipped, 500, 1_000)
    offset = np.cumsum(out.ms_played + gap) - (out.ms_played + gap)
    start_us = int(ts.timestamp() * 1_000_000)

    token = f"{int(rng.integers(0, 2**40)):010x}"
    false = np.zeros(n, dtype=bool)
    table = pa.table(
        {
            C.EVENT_ID: pa.array([f"r{token}{k:05d}" for k in range(n)], pa.string()),
            C.USER_ID: pa.array([user_id] * n, pa.string()),
            C.ITEM_ID: pa.array(cat.item_ids[items], pa.string()),
            C.TS: pa.array(start_us + offset * 1000, TS_TYPE),
            C.MS_PLAYED: pa.array(out.ms_played),
            C.REASON_START: pa.array(np.array(D.REASONS_START)[start_reason], pa.string()),
            C.REASON_END: pa.array(np.array(D.REASONS_END)[out.reason_end], pa.string()),
            C.SKIPPED: pa.array(skipped),
            C.SAVED: pa.array(out.saved),
            C.ADDED_TO_PLAYLIST: pa.array(out.added_to_playlist),
            C.FOLLOWED_ARTIST: pa.array(out.followed_artist),
            C.REPLAY: pa.array(false),
            C.CONTEXT_TYPE: pa.array([context] * n, pa.string()),
            C.DEVICE: pa.array(np.array(D.DEVICES)[device], pa.string()),
            C.PLATFORM: pa.array(np.array(D.PLATFORMS)[platform], pa.string()),
            C.COUNTRY: pa.array([D.MARKETS[lis.country[user]]] * n, pa.string()),
            C.TIER: pa.array([D.TIERS[lis.tier[user]]] * n, pa.string()),
            C.SHUFFLE: pa.array(false),
            C.OFFLINE: pa.array(false),
            C.SESSION_ID: pa.array([f"rs{token}"] * n, pa.string()),
        }
    )
    return conform(table, "events")
