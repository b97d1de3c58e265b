"""Geography and clock of the simulated world: markets, their tastes, time zones and rhythms.

Everything here is a fixed table, not a random draw, so the shape of the world (Brazil leans
latin and Portuguese, Japan J-pop and Japanese, ...) is the same for every seed; the seed
only decides who and what lives in it. Indices are positions in the tuples of
`crossfade.data.domains`, so codes can be mapped back to contract values by a lookup.
"""

from __future__ import annotations

import numpy as np

from crossfade.data import domains as D

MARKETS = D.MARKETS
N_MARKETS = len(MARKETS)
MARKET_INDEX = {m: i for i, m in enumerate(MARKETS)}
GENRE_INDEX = {g: i for i, g in enumerate(D.GENRES)}
LANGUAGE_INDEX = {lang: i for i, lang in enumerate(D.LANGUAGES)}
N_MUSIC_GENRES = len(D.MUSIC_GENRES)
PODCAST_GENRE_CODES = np.array([GENRE_INDEX[g] for g in D.PODCAST_GENRES], dtype=np.int16)

# Share of listeners per market (sums to 1).
USER_SHARE: dict[str, float] = {
    "US": 0.22,
    "GB": 0.08,
    "DE": 0.08,
    "FR": 0.06,
    "SE": 0.03,
    "BR": 0.12,
    "MX": 0.08,
    "ES": 0.05,
    "JP": 0.07,
    "IN": 0.10,
    "NG": 0.05,
    "ID": 0.06,
}

# UTC offsets in minutes (January, so no daylight saving), with the share of listeners.
UTC_OFFSETS: dict[str, tuple[tuple[int, float], ...]] = {
    "US": ((-300, 0.47), (-360, 0.29), (-420, 0.07), (-480, 0.17)),
    "GB": ((0, 1.0),),
    "DE": ((60, 1.0),),
    "FR": ((60, 1.0),),
    "SE": ((60, 1.0),),
    "BR": ((-180, 1.0),),
    "MX": ((-360, 1.0),),
    "ES": ((60, 1.0),),
    "JP": ((540, 1.0),),
    "IN": ((330, 1.0),),
    "NG": ((60, 1.0),),
    "ID": ((420, 1.0),),
}

# Preferred languages of listeners per market.
LANGUAGE_MIX: dict[str, dict[str, float]] = {
    "US": {"en": 0.85, "es": 0.15},
    "GB": {"en": 1.0},
    "DE": {"de": 0.7, "en": 0.3},
    "FR": {"fr": 0.8, "en": 0.2},
    "SE": {"sv": 0.6, "en": 0.4},
    "BR": {"pt": 0.95, "en": 0.05},
    "MX": {"es": 0.95, "en": 0.05},
    "ES": {"es": 0.9, "en": 0.1},
    "JP": {"ja": 0.95, "en": 0.05},
    "IN": {"hi": 0.7, "en": 0.3},
    "NG": {"en": 0.6, "yo": 0.4},
    "ID": {"id": 0.85, "en": 0.15},
}

# Music genre mix: a global base plus each market's local leanings.
BASE_GENRE_MIX: dict[str, float] = {
    "pop": 0.20,
    "hip_hop": 0.14,
    "rock": 0.10,
    "electronic": 0.08,
    "latin": 0.05,
    "rnb": 0.07,
    "indie": 0.06,
    "classical": 0.03,
    "jazz": 0.02,
    "country": 0.03,
    "kpop": 0.04,
    "afrobeats": 0.03,
    "metal": 0.03,
    "schlager": 0.01,
    "jpop": 0.01,
    "bollywood": 0.01,
}
GENRE_BOOST: dict[str, dict[str, float]] = {
    "US": {"country": 0.08, "hip_hop": 0.06},
    "GB": {"indie": 0.06, "rock": 0.05},
    "DE": {"schlager": 0.12, "electronic": 0.06},
    "FR": {"hip_hop": 0.06, "electronic": 0.03},
    "SE": {"schlager": 0.10, "metal": 0.05, "pop": 0.05},
    "BR": {"latin": 0.30},
    "MX": {"latin": 0.35},
    "ES": {"latin": 0.20},
    "JP": {"jpop": 0.40},
    "IN": {"bollywood": 0.45},
    "NG": {"afrobeats": 0.40},
    "ID": {"kpop": 0.12, "pop": 0.10},
}

# Share of listeners who also listen to podcasts.
PODCAST_SHARE: dict[str, float] = dict(
    zip(MARKETS, (0.45, 0.45, 0.35, 0.3, 0.45, 0.3, 0.3, 0.3, 0.25, 0.25, 0.2, 0.25), strict=True)
)

# Share of phones that run iOS (the rest Android).
IOS_SHARE: dict[str, float] = dict(
    zip(MARKETS, (0.55, 0.5, 0.4, 0.4, 0.5, 0.15, 0.2, 0.3, 0.65, 0.05, 0.1, 0.1), strict=True)
)

# Language an artist sings in, by genre (None: the artist's home-market mix).
GENRE_LANGUAGE: dict[str, dict[str, float] | None] = {
    "latin": {"es": 0.8, "pt": 0.2},
    "kpop": {"ko": 1.0},
    "jpop": {"ja": 1.0},
    "bollywood": {"hi": 1.0},
    "afrobeats": {"yo": 0.5, "en": 0.5},
    "classical": {"instrumental": 0.9, "de": 0.05, "fr": 0.05},
    "jazz": {"instrumental": 0.4, "en": 0.6},
    "electronic": {"instrumental": 0.35, "en": 0.65},
    "schlager": {"de": 0.7, "sv": 0.3},
    "country": {"en": 1.0},
}

# Probability that a track of a genre is explicit; podcasts by podcast genre.
EXPLICIT_SHARE: dict[str, float] = {
    "hip_hop": 0.6,
    "rnb": 0.3,
    "pop": 0.15,
    "metal": 0.3,
    "rock": 0.12,
    "latin": 0.25,
    "afrobeats": 0.2,
    "electronic": 0.08,
    "indie": 0.1,
    "comedy": 0.45,
    "true_crime": 0.2,
}

# Audio-feature centre per genre: danceability, energy, valence, tempo, acousticness, speech.
AUDIO_CENTRE: dict[str, tuple[float, float, float, float, float, float]] = {
    "pop": (0.68, 0.65, 0.55, 118, 0.2, 0.07),
    "hip_hop": (0.75, 0.62, 0.45, 96, 0.15, 0.25),
    "rock": (0.5, 0.78, 0.45, 126, 0.1, 0.05),
    "electronic": (0.72, 0.82, 0.45, 126, 0.05, 0.06),
    "latin": (0.76, 0.72, 0.68, 100, 0.2, 0.09),
    "rnb": (0.66, 0.55, 0.48, 98, 0.25, 0.1),
    "indie": (0.55, 0.58, 0.42, 118, 0.35, 0.05),
    "classical": (0.3, 0.2, 0.3, 100, 0.92, 0.04),
    "jazz": (0.55, 0.4, 0.5, 112, 0.7, 0.06),
    "country": (0.6, 0.62, 0.6, 112, 0.35, 0.04),
    "kpop": (0.7, 0.78, 0.6, 120, 0.12, 0.07),
    "afrobeats": (0.8, 0.7, 0.7, 106, 0.2, 0.1),
    "metal": (0.4, 0.93, 0.3, 140, 0.02, 0.08),
    "schlager": (0.62, 0.7, 0.75, 120, 0.25, 0.04),
    "jpop": (0.6, 0.75, 0.6, 130, 0.15, 0.05),
    "bollywood": (0.65, 0.68, 0.62, 110, 0.3, 0.07),
}

# Devices: the mix of a listener's main device, and of the other devices they use.
DEVICES = ("phone", "desktop", "tablet", "speaker", "tv", "car", "web")
DEVICE_CODES = np.array([D.DEVICES.index(d) for d in DEVICES], dtype=np.int8)
DEVICE_MIX = np.array([0.68, 0.14, 0.04, 0.05, 0.03, 0.02, 0.04])
PHONE, DESKTOP, TABLET, SPEAKER, TV, CAR, WEB = (D.DEVICES.index(d) for d in DEVICES)
IOS, ANDROID, WINDOWS, MACOS, LINUX, WEB_PLATFORM, CAST = (
    D.PLATFORMS.index(p) for p in ("ios", "android", "windows", "macos", "linux", "web", "cast")
)
DESKTOP_OS_MIX = (np.array([WINDOWS, MACOS, LINUX], dtype=np.int8), np.array([0.72, 0.24, 0.04]))

# Listening by local hour (0-23): night trough, commute bump, evening peak around 20:00.
DAILY_RHYTHM = np.array(
    [
        0.35, 0.2, 0.12, 0.08, 0.07, 0.12, 0.35, 0.7, 0.85, 0.75, 0.7, 0.7,
        0.8, 0.75, 0.7, 0.75, 0.85, 1.0, 1.15, 1.3, 1.45, 1.4, 1.05, 0.65,
    ]
)  # fmt: skip
DAILY_RHYTHM = DAILY_RHYTHM / DAILY_RHYTHM.sum()
# Activity multiplier by weekday (Monday first): Friday busiest, Sunday quietest.
WEEKLY_RHYTHM = np.array([0.96, 0.98, 1.0, 1.02, 1.14, 1.04, 0.84])

AGE_MIX_ADULT = {"18-24": 0.3, "25-34": 0.3, "35-44": 0.18, "45-54": 0.12, "55+": 0.1}


def market_genre_mix() -> np.ndarray:
    """Music-genre shares per market, shape (markets, music genres), rows summing to 1."""
    mix = np.tile([BASE_GENRE_MIX[g] for g in D.MUSIC_GENRES], (N_MARKETS, 1))
    for m, boosts in GENRE_BOOST.items():
        for g, extra in boosts.items():
            mix[MARKET_INDEX[m], D.MUSIC_GENRES.index(g)] += extra
    return mix / mix.sum(axis=1, keepdims=True)


def market_language_mix() -> np.ndarray:
    """Listener-language shares per market, shape (markets, languages), rows summing to 1."""
    mix = np.zeros((N_MARKETS, len(D.LANGUAGES)))
    for m, langs in LANGUAGE_MIX.items():
        for lang, share in langs.items():
            mix[MARKET_INDEX[m], LANGUAGE_INDEX[lang]] = share
    return mix / mix.sum(axis=1, keepdims=True)


def user_market_share() -> np.ndarray:
    """Share of listeners per market in MARKETS order."""
    share = np.array([USER_SHARE[m] for m in MARKETS])
    return share / share.sum()


def platform_of(device: np.ndarray, phone_os: np.ndarray, desktop_os: np.ndarray) -> np.ndarray:
    """The platform a device runs on for each row: phones/tablets/cars the listener's mobile OS,
    desktops their desktop OS, speakers and TVs cast, the web player web."""
    out = np.full(device.shape, WEB_PLATFORM, dtype=np.int8)
    mobile = (device == PHONE) | (device == TABLET) | (device == CAR)
    out[mobile] = phone_os[mobile]
    desk = device == DESKTOP
    out[desk] = desktop_os[desk]
    out[(device == SPEAKER) | (device == TV)] = CAST
    return out
