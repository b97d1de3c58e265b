"""One simulated day of human listening, vectorised over sessions and plays.

For a day: who listens (daily-active probability times the weekday rhythm; new listeners from
their sign-up day on), how many sessions, when (local hour from the daily rhythm, converted to
UTC with the listener's offset), on which device, in which context, and for how long. Then per
play: which item (personal rotation, market chart, album or artist run, episode rotation),
repaired when it is not playable that day (unreleased, unavailable in the market, explicit
behind a filter), then skip, replay, play length, end and start reasons, engagement, and
timestamps laid end to end with ad breaks for Ad-supported listeners.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from crossfade.data import domains as D
from crossfade.data.simulator import behaviour as B
from crossfade.data.simulator import markets as M
from crossfade.data.simulator.daylog import DayAds, DayEvents, empty
from crossfade.data.simulator.listeners import AD_SUPPORTED, PREMIUM
from crossfade.data.simulator.rotation import Charts, Rotation
from crossfade.data.simulator.world import World

MUSIC_CONTEXTS = tuple(c for c in D.CONTEXT_TYPES if c not in ("podcast_show", "unknown"))
MUSIC_CONTEXT_CODES = np.array([B.CONTEXT[c] for c in MUSIC_CONTEXTS], dtype=np.int8)
MUSIC_CONTEXT_MIX = np.array([0.30, 0.12, 0.06, 0.08, 0.12, 0.07, 0.08, 0.17])
# Shuffle probability per context, for Premium and Ad-supported listeners (forced on mobile).
SHUFFLE_PREMIUM = np.zeros(len(B.CONTEXT), dtype=np.float32)
SHUFFLE_FREE = np.zeros(len(B.CONTEXT), dtype=np.float32)
for _name, (_premium, _free) in {
    "playlist": (0.35, 0.75),
    "collection": (0.45, 0.75),
    "artist": (0.3, 0.7),
    "album": (0.08, 0.45),
}.items():
    SHUFFLE_PREMIUM[B.CONTEXT[_name]] = _premium
    SHUFFLE_FREE[B.CONTEXT[_name]] = _free

PODCAST_SESSION_SHARE = 0.35
PRIMARY_DEVICE_SHARE = 0.7
OFFLINE_SHARE = 0.08
MAX_SESSION_LENGTH = 250
CHART_SHARE = {"home_shelf": 0.7, "radio": 0.5}
AD_DURATIONS_MS = np.array([15_000, 30_000], dtype=np.int64)
AD_CLICK_RATE = 0.008
REPAIR_TRIES = 3
SIGNUP_TO_FIRST_SESSION_S = 600


def playable(world: World, items: np.ndarray, users: np.ndarray, day: int) -> np.ndarray:
    """Whether each item can be played by the paired listener on window day `day`."""
    cat, lis = world.catalogue, world.listeners
    return np.asarray(
        (cat.item_release_day[items] <= day)
        & cat.available(items, lis.country[users])
        & ~(cat.item_explicit[items] & lis.explicit_filter[users])
    )


def _choose_items(
    world: World,
    rotation: Rotation,
    charts: Charts,
    rng: np.random.Generator,
    day: int,
    session_users: np.ndarray,
    play_session: np.ndarray,
    play_users: np.ndarray,
    context: np.ndarray,
    position: np.ndarray,
    episode: np.ndarray,
) -> np.ndarray:
    """The item of every play, by context, repaired until playable for the listener that day."""
    cat, lis = world.catalogue, world.listeners
    n = len(play_users)
    k = rotation.music.shape[1]
    u = rng.random(n)
    slot = u * k
    slot = np.where(context == B.CONTEXT["collection"], u * max(1, k // 3), slot)
    slot = np.where(context == B.CONTEXT["discover_weekly"], k // 2 + u * (k - k // 2), slot)
    item = rotation.music[play_users, slot.astype(np.int64).clip(0, k - 1)]

    cu = rng.random(n)
    chart = np.zeros(n, dtype=bool)
    for name, share in CHART_SHARE.items():
        chart |= (context == B.CONTEXT[name]) & (cu < share)
    if chart.any():
        cu_users = play_users[chart]
        item[chart] = charts.draw(rng, lis.country[cu_users], lis.explicit_filter[cu_users])

    seed = rotation.music[session_users, rng.integers(0, k, size=len(session_users))]
    album = np.flatnonzero(context == B.CONTEXT["album"])
    if len(album):
        s = seed[play_session[album]]
        first, length = cat.item_album_start[s], cat.item_album_len[s]
        item[album] = first + (s - first + position[album]) % length
    artist = np.flatnonzero(context == B.CONTEXT["artist"])
    if len(artist):
        a = cat.item_artist[seed[play_session[artist]]]
        item[artist] = cat.artist_item_start[a] + rng.integers(0, cat.artist_item_count[a])
    ke = rotation.episodes.shape[1]
    ep = np.flatnonzero(episode)
    if len(ep):
        item[ep] = rotation.episodes[play_users[ep], rng.integers(0, ke, size=len(ep))]

    for _ in range(REPAIR_TRIES):
        bad = np.flatnonzero(~playable(world, item, play_users, day))
        if not len(bad):
            break
        bad_ep = bad[episode[bad]]
        bad_music = bad[~episode[bad]]
        item[bad_music] = rotation.music[play_users[bad_music], rng.integers(0, k, len(bad_music))]
        if len(bad_ep):
            item[bad_ep] = rotation.episodes[play_users[bad_ep], rng.integers(0, ke, len(bad_ep))]
    bad = ~playable(world, item, play_users, day)
    item[bad] = np.where(
        episode[bad], rotation.episode_fallback[play_users[bad]], rotation.fallback[play_users[bad]]
    )
    return item.astype(np.int32)


def _start_seconds(
    world: World, rng: np.random.Generator, users: np.ndarray, day: int
) -> np.ndarray:
    """UTC second of the day each session starts: local hour from the daily rhythm; on the
    sign-up day never before the listener has signed up and onboarded."""
    lis = world.listeners
    n = len(users)
    local = rng.choice(24, size=n, p=M.DAILY_RHYTHM) * 3600 + rng.random(n) * 3600
    utc = np.mod(local - lis.utc_offset[users].astype(np.float64) * 60, 86_400)
    earliest = lis.signup_sec[users] + SIGNUP_TO_FIRST_SESSION_S
    early = (lis.signup_day[users] == day) & (utc < earliest)
    if early.any():
        lo = earliest[early]
        utc[early] = lo + rng.random(int(early.sum())) * (86_400 - lo)
    return utc


def human_day(
    world: World, rotation: Rotation, charts: Charts, day: int, rng: np.random.Generator
) -> tuple[DayEvents, DayAds]:
    """All plays and ad impressions of the human listeners on window day `day`."""
    sim, lis, cat = world.sim, world.listeners, world.catalogue
    weekday = (world.start + timedelta(days=day)).weekday()
    eligible = ~lis.is_bot & (lis.signup_day <= day)
    p_active = np.minimum(lis.activity * M.WEEKLY_RHYTHM[weekday], 1.0)
    p_active = np.where(lis.signup_day == day, 1.0, p_active)
    users = np.flatnonzero(eligible & (rng.random(lis.n) < p_active))
    per_user = 1 + rng.poisson(max(sim.sessions_per_active_day - 1.0, 0.0), size=len(users))
    su = np.repeat(users, per_user).astype(np.int32)
    n_sessions = len(su)
    if n_sessions == 0:
        return empty(DayEvents), empty(DayAds)

    # --- sessions ----------------------------------------------------------------------
    podcast = (
        lis.podcast_listener[su]
        & (rotation.episode_fallback[su] >= 0)
        & (rng.random(n_sessions) < PODCAST_SESSION_SHARE)
    )
    context = MUSIC_CONTEXT_CODES[
        rng.choice(len(MUSIC_CONTEXT_CODES), size=n_sessions, p=MUSIC_CONTEXT_MIX)
    ]
    context[podcast] = B.CONTEXT["podcast_show"]
    mean_len = np.maximum(sim.mean_session_length * lis.session_scale[su], 1.0)
    length = rng.geometric(1.0 / mean_len)
    search = context == B.CONTEXT["search"]
    length[search] = np.minimum(length[search], 1 + rng.poisson(1.5, size=int(search.sum())))
    length[podcast] = 1 + (rng.random(int(podcast.sum())) < 0.3)
    length = np.minimum(length, MAX_SESSION_LENGTH).astype(np.int64)
    start_s = _start_seconds(world, rng, su, day)

    secondary = M.DEVICE_CODES[rng.choice(len(M.DEVICES), size=n_sessions, p=M.DEVICE_MIX)]
    primary = rng.random(n_sessions) < PRIMARY_DEVICE_SHARE
    device = np.where(primary, lis.primary_device[su], secondary).astype(np.int8)
    platform = M.platform_of(device, lis.phone_os[su], lis.desktop_os[su])
    mobile = np.isin(device, [M.PHONE, M.TABLET, M.CAR])
    cast = np.isin(device, [M.SPEAKER, M.TV])
    premium = lis.tier[su] == PREMIUM
    offline = mobile & (premium | podcast) & (rng.random(n_sessions) < OFFLINE_SHARE)
    shuffle_p = np.where(premium, SHUFFLE_PREMIUM[context], SHUFFLE_FREE[context])
    shuffle = rng.random(n_sessions) < shuffle_p

    # --- plays -------------------------------------------------------------------------
    n = int(length.sum())
    es = np.repeat(np.arange(n_sessions), length)
    first = np.cumsum(length) - length
    pos = np.arange(n) - first[es]
    eu = su[es]
    ectx = context[es]
    is_ep = podcast[es]
    item = _choose_items(world, rotation, charts, rng, day, su, es, eu, ectx, pos, is_ep)
    aff = world.latent.affinity_pairs(eu, item)

    skipped = rng.random(n) < B.skip_probability(aff, pos, ectx, is_ep)
    replay = np.zeros(n, dtype=bool)
    later = np.flatnonzero((pos > 0) & ~is_ep)
    prev = later - 1
    replay[later] = ~skipped[prev] & (rng.random(len(later)) < B.replay_probability(aff[prev]))
    root = np.maximum.accumulate(np.where(replay, 0, np.arange(n)))
    item, aff = item[root], aff[root]
    skipped[replay] = False

    last = pos == length[es] - 1
    duration = cat.item_duration_ms[item]
    cast_e = cast[es]
    out = B.play_outcomes(rng, skipped, aff, duration, is_ep, last, cast_e)
    for flag in (out.saved, out.added_to_playlist, out.followed_artist):
        flag[replay] = False
    prev_end = np.zeros(n, dtype=np.int8)
    prev_end[1:] = out.reason_end[:-1]
    start_reason = B.reason_starts(rng, pos, prev_end, replay, ectx, cast_e)

    # --- time, with ad breaks ----------------------------------------------------------
    gap = np.where(skipped, 200 + 800 * rng.random(n), 300 + 1700 * rng.random(n)).astype(np.int64)
    ad_break = (
        (lis.tier[eu] == AD_SUPPORTED)
        & ~is_ep
        & ~offline[es]
        & ((pos + 1) % lis.ad_every[eu] == 0)
        & ~last
    )
    ad_ms = np.where(ad_break, AD_DURATIONS_MS[rng.integers(0, 2, size=n)], 0)
    step = out.ms_played + gap + ad_ms
    offset = np.cumsum(step) - step
    offset -= offset[first][es]
    session_us = world.day_start_us(day) + (start_s * 1e6).astype(np.int64)
    ts = session_us[es] + offset * 1000

    events = DayEvents(
        user=eu.astype(np.int32),
        item=item,
        ts_us=ts,
        ms_played=out.ms_played,
        reason_start=start_reason,
        reason_end=out.reason_end,
        skipped=skipped,
        saved=out.saved,
        added_to_playlist=out.added_to_playlist,
        followed_artist=out.followed_artist,
        replay=replay,
        context=ectx.astype(np.int8),
        device=device[es],
        platform=platform[es],
        shuffle=shuffle[es],
        offline=offline[es],
        session=es.astype(np.int64),
    )
    a = np.flatnonzero(ad_break)
    ads = DayAds(
        user=eu[a].astype(np.int32),
        ts_us=ts[a] + (out.ms_played[a] + gap[a]) * 1000,
        session=es[a].astype(np.int64),
        ad=rng.integers(0, len(cat.ad_ids), size=len(a)).astype(np.int32),
        duration_ms=ad_ms[a].astype(np.int64),
        clicked=rng.random(len(a)) < AD_CLICK_RATE,
    )
    return events, ads
