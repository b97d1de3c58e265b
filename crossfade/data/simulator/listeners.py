"""The listeners of the simulated world: demographics, habits, devices, and the bot rings.

Activity is heavy-tailed (a lognormal daily-active probability and a lognormal session-length
scale), so a minority of listeners produce most plays. Bots are ordinary-looking accounts that
belong to a ring: a ring shares one market and tier and streams one narrow set of
low-popularity tracks in lockstep. Only the ground truth (`is_bot`, `bot_ring`) tells them apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crossfade.config import SimulatorSettings
from crossfade.data import domains as D
from crossfade.data.simulator import ids
from crossfade.data.simulator import markets as M
from crossfade.data.simulator.catalogue import Catalogue

PREMIUM, AD_SUPPORTED = 0, 1
MINOR_AGE = D.AGE_BUCKETS.index("13-17")
EXPLICIT_FILTER_SHARE = 0.85  # minors whose account filters explicit content
NEW_USER_SIGNUP_HOURS = 6  # new listeners sign up in the first hours of their UTC day
RING_TRACKS = (3, 10)  # a ring streams this many distinct tracks (inclusive range)


@dataclass
class Listeners:
    """Listeners as parallel arrays (codes index the tuples of `domains` / `markets`)."""

    user_ids: np.ndarray
    country: np.ndarray  # int8 market code
    utc_offset: np.ndarray  # int16 minutes east of UTC
    tier: np.ndarray  # int8: 0 premium, 1 ad-supported
    age: np.ndarray  # int8 code into AGE_BUCKETS
    language: np.ndarray  # int16 code into LANGUAGES
    signup_day: np.ndarray  # int32 day offset from the window start (negative: before)
    signup_sec: np.ndarray  # int32 second of the UTC day of sign-up (new listeners)
    activity: np.ndarray  # float32 probability of listening on a given day
    session_scale: np.ndarray  # float32 multiplier of the mean session length
    primary_device: np.ndarray  # int8 code into DEVICES
    phone_os: np.ndarray  # int8 code into PLATFORMS (ios / android)
    desktop_os: np.ndarray  # int8 code into PLATFORMS (windows / macos / linux)
    explicit_filter: np.ndarray  # bool: explicit content is hidden
    podcast_listener: np.ndarray  # bool
    ad_every: np.ndarray  # int8: an ad break after every n-th track (ad-supported)
    is_bot: np.ndarray  # bool (ground truth)
    bot_ring: np.ndarray  # int32 ring index, -1 for humans (ground truth)

    @property
    def n(self) -> int:
        """Number of listeners."""
        return len(self.user_ids)

    @property
    def is_minor(self) -> np.ndarray:
        """Listeners aged 13-17."""
        return np.asarray(self.age == MINOR_AGE)


@dataclass
class Onboarding:
    """Artists new listeners picked when they signed up (one row per pick)."""

    user: np.ndarray  # int32 listener index
    artist: np.ndarray  # int32 artist index
    picked_sec: np.ndarray  # int64 seconds since the window start (UTC)


@dataclass
class Rings:
    """Bot rings: market, tier and the narrow track set each ring streams."""

    country: np.ndarray  # int8 market code per ring
    tier: np.ndarray  # int8 per ring
    items: np.ndarray  # int32 track indices of all rings, ring after ring
    items_start: np.ndarray  # int32 offsets into `items`, length rings + 1

    @property
    def n(self) -> int:
        """Number of rings."""
        return len(self.country)

    def tracks(self, ring: int) -> np.ndarray:
        """The tracks ring `ring` streams."""
        return np.asarray(self.items[self.items_start[ring] : self.items_start[ring + 1]])


def build_listeners(sim: SimulatorSettings, rng: np.random.Generator) -> Listeners:
    """Draw the listeners (humans and bots) of a world."""
    n = sim.users
    n_bots = min(n, round(n * sim.bot_share))
    is_bot = np.zeros(n, dtype=bool)
    is_bot[rng.choice(n, size=n_bots, replace=False)] = True
    bot_ring = np.full(n, -1, dtype=np.int32)
    bot_ring[np.flatnonzero(is_bot)] = np.arange(n_bots) // sim.bot_ring_size
    n_rings = math.ceil(n_bots / sim.bot_ring_size) if n_bots else 0

    country = rng.choice(M.N_MARKETS, size=n, p=M.user_market_share()).astype(np.int8)
    ring_country = rng.choice(M.N_MARKETS, size=n_rings, p=M.user_market_share()).astype(np.int8)
    country[is_bot] = ring_country[bot_ring[is_bot]]

    utc_offset = np.zeros(n, dtype=np.int16)
    for market, zones in M.UTC_OFFSETS.items():
        mask = country == M.MARKET_INDEX[market]
        offsets = np.array([z for z, _ in zones])
        p = np.array([s for _, s in zones])
        utc_offset[mask] = offsets[rng.choice(len(offsets), size=int(mask.sum()), p=p / p.sum())]

    lang_mix = M.market_language_mix()
    cdf = np.cumsum(lang_mix, axis=1)
    language = (rng.random(n)[:, None] > cdf[country]).sum(axis=1).astype(np.int16)

    minor = ~is_bot & (rng.random(n) < sim.minor_share)
    adult_codes = np.array([D.AGE_BUCKETS.index(a) for a in M.AGE_MIX_ADULT], dtype=np.int8)
    adult_p = np.array(list(M.AGE_MIX_ADULT.values()))
    age_code = adult_codes[rng.choice(len(adult_codes), size=n, p=adult_p / adult_p.sum())]
    age_code = np.where(minor, MINOR_AGE, age_code).astype(np.int8)

    tier = np.where(rng.random(n) < sim.premium_share, PREMIUM, AD_SUPPORTED).astype(np.int8)
    ring_tier = np.where(rng.random(n_rings) < 0.3, PREMIUM, AD_SUPPORTED).astype(np.int8)
    tier[is_bot] = ring_tier[bot_ring[is_bot]]

    humans = np.flatnonzero(~is_bot)
    n_new = round(len(humans) * sim.new_user_share)
    new = np.zeros(n, dtype=bool)
    new[rng.choice(humans, size=n_new, replace=False)] = True
    signup_day = np.where(
        new, rng.integers(0, sim.days, size=n), -1 - rng.integers(0, 2_500, size=n)
    ).astype(np.int32)
    signup_day[is_bot] = -5 - rng.integers(0, 90, size=n_bots)
    signup_sec = np.where(new, rng.integers(0, NEW_USER_SIGNUP_HOURS * 3600, size=n), 0)

    activity = np.exp(rng.normal(math.log(0.4), 0.9, size=n)).clip(0.03, 0.95)
    scale = rng.lognormal(0.0, 0.5, size=n)
    scale /= math.exp(0.5**2 / 2)

    device_codes = M.DEVICE_CODES[rng.choice(len(M.DEVICES), size=n, p=M.DEVICE_MIX)]
    bot_device = np.where(rng.random(n) < 0.6, M.DESKTOP, M.WEB).astype(np.int8)
    primary_device = np.where(is_bot, bot_device, device_codes).astype(np.int8)
    ios_share = np.array([M.IOS_SHARE[m] for m in M.MARKETS])[country]
    phone_os = np.where(rng.random(n) < ios_share, M.IOS, M.ANDROID).astype(np.int8)
    os_codes, os_p = M.DESKTOP_OS_MIX
    desktop_os = os_codes[rng.choice(len(os_codes), size=n, p=os_p)]
    desktop_os[is_bot] = M.WINDOWS

    explicit_filter = minor & (rng.random(n) < EXPLICIT_FILTER_SHARE)
    pod_share = np.array([M.PODCAST_SHARE[m] for m in M.MARKETS])[country]
    podcast = ~is_bot & (rng.random(n) < pod_share) & (sim.episodes > 0)
    ad_every = rng.integers(3, 6, size=n).astype(np.int8)

    return Listeners(
        user_ids=ids.hex_ids(rng, n, "u", 12),
        country=country,
        utc_offset=utc_offset,
        tier=tier,
        age=age_code,
        language=language,
        signup_day=signup_day,
        signup_sec=signup_sec.astype(np.int32),
        activity=activity.astype(np.float32),
        session_scale=scale.astype(np.float32),
        primary_device=primary_device,
        phone_os=phone_os,
        desktop_os=desktop_os.astype(np.int8),
        explicit_filter=explicit_filter,
        podcast_listener=podcast,
        ad_every=ad_every,
        is_bot=is_bot,
        bot_ring=bot_ring,
    )


def pick_onboarding(
    listeners: Listeners,
    cat: Catalogue,
    user_factors: np.ndarray,
    artist_factors: np.ndarray,
    rng: np.random.Generator,
) -> Onboarding:
    """3-5 artists per new listener, mostly matching their taste (Gumbel top-k over the true
    user-artist affinity plus artist popularity), picked just after sign-up."""
    new = np.flatnonzero(~listeners.is_bot & (listeners.signup_day >= 0))
    music = np.flatnonzero((cat.artist_item_count > 0) & (cat.artist_genre < M.N_MUSIC_GENRES))
    if len(new) == 0 or len(music) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Onboarding(empty.astype(np.int32), empty.astype(np.int32), empty)
    k = rng.integers(3, 6, size=len(new))
    users, artists, secs = [], [], []
    chunk = max(1, 2_000_000 // len(music))
    for lo in range(0, len(new), chunk):
        rows = new[lo : lo + chunk]
        score = user_factors[rows] @ artist_factors[music].T
        score = (score - score.mean(axis=1, keepdims=True)) / (
            score.std(axis=1, keepdims=True) + 1e-9
        )
        logits = 2.5 * score + 0.5 * cat.artist_popularity[music]
        logits += rng.gumbel(size=logits.shape)
        top = np.argsort(-logits, axis=1)[:, :5]
        r, c = np.nonzero(np.arange(top.shape[1])[None, :] < k[lo : lo + chunk, None])
        users.append(rows[r])
        artists.append(music[top[r, c]])
        base = (listeners.signup_day[rows[r]].astype(np.int64) * 86_400) + listeners.signup_sec[
            rows[r]
        ]
        secs.append(base + 30 * (c + 1) + rng.integers(0, 30, size=len(r)))
    return Onboarding(
        user=np.concatenate(users).astype(np.int32),
        artist=np.concatenate(artists).astype(np.int32),
        picked_sec=np.concatenate(secs).astype(np.int64),
    )


def form_rings(listeners: Listeners, cat: Catalogue, rng: np.random.Generator) -> Rings:
    """Give every bot ring its narrow set of tracks: low-popularity catalogue tracks that
    are old enough and playable in the ring's market (evergreens if nothing else fits)."""
    n_rings = int(listeners.bot_ring.max()) + 1 if listeners.is_bot.any() else 0
    country = np.zeros(n_rings, dtype=np.int8)
    tier = np.zeros(n_rings, dtype=np.int8)
    items: list[np.ndarray] = []
    tracks = np.arange(cat.n_tracks)
    median_pop = np.median(cat.item_popularity[tracks]) if len(tracks) else 0.0
    for r in range(n_rings):
        member = np.flatnonzero(listeners.bot_ring == r)[0]
        country[r] = listeners.country[member]
        tier[r] = listeners.tier[member]
        market = np.full(len(tracks), country[r])
        ok = (
            (cat.item_release_day[tracks] <= 0)
            & cat.available(tracks, market)
            & (cat.item_popularity[tracks] < median_pop)
        )
        pool = tracks[ok]
        if len(pool) == 0:
            pool = np.flatnonzero(cat.item_evergreen)
        size = min(len(pool), int(rng.integers(RING_TRACKS[0], RING_TRACKS[1] + 1)))
        items.append(np.sort(rng.choice(pool, size=size, replace=False)))
    start = np.concatenate([[0], np.cumsum([len(x) for x in items])]).astype(np.int32)
    flat = np.concatenate(items).astype(np.int32) if items else np.zeros(0, dtype=np.int32)
    return Rings(country=country, tier=tier, items=flat, items_start=start)
