"""One simulated day of stream-farm bots.

Each ring runs bursts of plays at uniformly random times of the UTC day (no daily rhythm);
in a burst every member plays the same sequence of the ring's few tracks, a few seconds apart
(lockstep), each play lasting just over the 30-second stream threshold, then skips forward.
No saves, no follows, no playlist adds. Ad-supported rings still sit through ad breaks.
"""

from __future__ import annotations

import numpy as np

from crossfade.data import domains as D
from crossfade.data.simulator import behaviour as B
from crossfade.data.simulator import markets as M
from crossfade.data.simulator.daylog import DayAds, DayEvents, concat, empty
from crossfade.data.simulator.listeners import AD_SUPPORTED
from crossfade.data.simulator.world import World

BURSTS_PER_DAY = 10.0
BURST_PLAYS = (3, 9)  # plays per burst, [low, high)
OVER_THRESHOLD_MS = (800, 4_500)  # how far past the stream threshold a bot play lasts
MEMBER_LAG_S = 20  # members of a ring start within this many seconds of each other
AD_DURATION_MS = 15_000


def bot_day(
    world: World, day: int, rng: np.random.Generator, session_base: int
) -> tuple[DayEvents, DayAds]:
    """All plays and ad impressions of the bot rings on window day `day`.

    Session numbers start at `session_base` so they never collide with human sessions.
    """
    lis, rings = world.listeners, world.rings
    day_us = world.day_start_us(day)
    event_parts: list[DayEvents] = []
    ad_parts: list[DayAds] = []
    session = session_base
    for r in range(rings.n):
        members = np.flatnonzero((lis.bot_ring == r) & (lis.signup_day <= day))
        tracks = rings.tracks(r)
        bursts = int(rng.poisson(BURSTS_PER_DAY))
        if len(members) == 0 or len(tracks) == 0 or bursts == 0:
            continue
        starts = np.sort(rng.random(bursts) * 86_400)
        lengths = rng.integers(BURST_PLAYS[0], BURST_PLAYS[1], size=bursts)
        n = int(lengths.sum())
        burst = np.repeat(np.arange(bursts), lengths)
        first = np.cumsum(lengths) - lengths
        pos = np.arange(n) - first[burst]
        item = tracks[rng.integers(0, len(tracks), size=n)]
        ms = D.STREAM_THRESHOLD_MS + rng.integers(*OVER_THRESHOLD_MS, size=n)
        ad_every = int(lis.ad_every[members[0]])
        ad = (rings.tier[r] == AD_SUPPORTED) & ((pos + 1) % ad_every == 0)
        ad &= pos < lengths[burst] - 1
        step = ms + 1_000 + np.where(ad, AD_DURATION_MS, 0)
        offset = np.cumsum(step) - step
        offset -= offset[first][burst]
        base = day_us + (starts[burst] * 1e6).astype(np.int64) + offset * 1000

        m = len(members)
        lag = rng.integers(0, MEMBER_LAG_S * 1_000_000, size=m)
        user = np.repeat(members, n)
        ts = np.tile(base, m) + np.repeat(lag, n)
        played = np.tile(ms, m) + rng.integers(-300, 300, size=n * m)
        played = np.maximum(played, D.STREAM_THRESHOLD_MS + 200)
        device = lis.primary_device[user]
        false = np.zeros(n * m, dtype=bool)
        event_parts.append(
            DayEvents(
                user=user.astype(np.int32),
                item=np.tile(item, m).astype(np.int32),
                ts_us=ts,
                ms_played=played.astype(np.int64),
                reason_start=np.tile(
                    np.where(pos == 0, B.REASON_START["clickrow"], B.REASON_START["fwdbtn"]), m
                ).astype(np.int8),
                reason_end=np.full(n * m, B.REASON_END["fwdbtn"], dtype=np.int8),
                skipped=~false,
                saved=false,
                added_to_playlist=false,
                followed_artist=false,
                replay=false,
                context=np.full(n * m, B.CONTEXT["playlist"], dtype=np.int8),
                device=device,
                platform=M.platform_of(device, lis.phone_os[user], lis.desktop_os[user]),
                shuffle=false,
                offline=false,
                session=(session + np.repeat(np.arange(m) * bursts, n) + np.tile(burst, m)).astype(
                    np.int64
                ),
            )
        )
        a = np.flatnonzero(np.tile(ad, m))
        if len(a):
            ad_parts.append(
                DayAds(
                    user=user[a].astype(np.int32),
                    ts_us=ts[a] + (played[a] + 1_000) * 1000,
                    session=event_parts[-1].session[a],
                    ad=rng.integers(0, len(world.catalogue.ad_ids), size=len(a)).astype(np.int32),
                    duration_ms=np.full(len(a), AD_DURATION_MS, dtype=np.int64),
                    clicked=np.zeros(len(a), dtype=bool),
                )
            )
        session += m * bursts
    events = concat(event_parts) if event_parts else empty(DayEvents)
    ads = concat(ad_parts) if ad_parts else empty(DayAds)
    return events, ads
