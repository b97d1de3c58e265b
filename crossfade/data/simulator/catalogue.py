"""The catalogue of the simulated world: artists, albums, tracks, podcast shows and episodes.

Items are laid out contiguously (tracks grouped by artist, then album; episodes after all
tracks, grouped by publisher, then show), so "the next track of this album" or "any track of
this artist" is index arithmetic. Release dates and market availability are decided per album
(a whole album comes out on one day, in the same markets). Popularity is heavy-tailed
(lognormal exposure, correlated within an artist), which is what makes a few hits take a large
share of plays. A handful of the most popular tracks are "evergreen": old, clean and available
everywhere, so every listener always has something playable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crossfade.config import SimulatorSettings
from crossfade.data import domains as D
from crossfade.data.simulator import ids
from crossfade.data.simulator import markets as M

NULL_DAY = np.iinfo(np.int32).min  # sentinel of a missing date (artist debut)
ALL_MARKETS = (1 << M.N_MARKETS) - 1
POPULARITY_SCALE = 1.7  # sd of log exposure: sets how heavy the head of the catalogue is
NEW_RELEASE_BOOST = 0.6  # new releases get promoted (log exposure)
EVERGREEN_SHARE = 0.01
N_ADS = 40


@dataclass
class Catalogue:
    """Artists and items as parallel arrays (codes index the tuples of `domains`)."""

    artist_ids: np.ndarray
    artist_names: np.ndarray
    artist_country: np.ndarray  # int8 market code
    artist_genre: np.ndarray  # int16 genre code
    artist_language: np.ndarray  # int16 language code
    artist_debut: np.ndarray  # int32 day offset from the window start, NULL_DAY if unknown
    artist_popularity: np.ndarray  # float32
    artist_item_start: np.ndarray  # int32 first item of the artist
    artist_item_count: np.ndarray  # int32
    item_ids: np.ndarray
    item_is_episode: np.ndarray  # bool
    item_titles: np.ndarray
    item_artist: np.ndarray  # int32
    item_album_ids: np.ndarray  # album (or show) id per item
    item_album_start: np.ndarray  # int32 first item of the item's album
    item_album_len: np.ndarray  # int32
    item_genre: np.ndarray  # int16
    item_language: np.ndarray  # int16
    item_release_day: np.ndarray  # int32 day offset from the window start
    item_duration_ms: np.ndarray  # int64
    item_explicit: np.ndarray  # bool
    item_audio: np.ndarray  # float32 (items, 6), NaN for episodes
    item_tags: np.ndarray
    item_markets: np.ndarray  # int32 bit mask over MARKETS
    item_popularity: np.ndarray  # float32 log exposure (ground truth)
    item_evergreen: np.ndarray  # bool
    ad_ids: np.ndarray

    @property
    def n_tracks(self) -> int:
        """Number of music tracks (they come first in item order)."""
        return int((~self.item_is_episode).sum())

    def available(self, items: np.ndarray, market: np.ndarray) -> np.ndarray:
        """Whether each item is playable in the paired market (licensing)."""
        return ((self.item_markets[items] >> market.astype(np.int32)) & 1).astype(bool)


def _split_counts(rng: np.random.Generator, total: int, weights: np.ndarray) -> np.ndarray:
    """Split `total` items over owners with the given (heavy-tailed) weights."""
    if total == 0 or len(weights) == 0:
        return np.zeros(len(weights), dtype=np.int64)
    return rng.multinomial(total, weights / weights.sum())


def _groups(
    rng: np.random.Generator, owner_counts: np.ndarray, sizes: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Cut a run of items (contiguous per owner) into groups (albums, shows).

    Returns the start index of every group; groups never cross an owner boundary.
    """
    total = int(owner_counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    values, probs = sizes
    draws = values[rng.choice(len(values), size=total, p=probs)]
    cuts = np.cumsum(draws)
    owner_cuts = np.cumsum(owner_counts)
    ends = np.union1d(cuts[cuts < total], owner_cuts[owner_cuts < total])
    return np.concatenate([[0], ends]).astype(np.int64)


def _choose_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row, from the distribution `probs[rows[k]]`."""
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(rows))
    return (u[:, None] > cdf[rows]).sum(axis=1).clip(0, probs.shape[1] - 1)


def _languages(rng: np.random.Generator, genre: np.ndarray, country: np.ndarray) -> np.ndarray:
    """The language each artist sings in: set by the genre where it has one, else the mix of
    the artist's home market."""
    market_lang = M.market_language_mix()
    out = _choose_rows(rng, market_lang, country).astype(np.int16)
    for g, langs in M.GENRE_LANGUAGE.items():
        if langs is None:
            continue
        mask = genre == M.GENRE_INDEX[g]
        if not mask.any():
            continue
        codes = np.array([M.LANGUAGE_INDEX[x] for x in langs], dtype=np.int16)
        p = np.array(list(langs.values()))
        out[mask] = codes[rng.choice(len(codes), size=int(mask.sum()), p=p / p.sum())]
    # Latin artists from Brazil sing in Portuguese.
    br = (genre == M.GENRE_INDEX["latin"]) & (country == M.MARKET_INDEX["BR"])
    out[br] = M.LANGUAGE_INDEX["pt"]
    return out


def _language_markets() -> np.ndarray:
    """Bit mask per language of the markets where listeners speak it."""
    mix = M.market_language_mix()
    masks = np.zeros(len(D.LANGUAGES), dtype=np.int32)
    for lang in range(len(D.LANGUAGES)):
        for m in np.flatnonzero(mix[:, lang] > 0):
            masks[lang] |= 1 << int(m)
    return masks


def _album_markets(
    rng: np.random.Generator, country: np.ndarray, language: np.ndarray
) -> np.ndarray:
    """Availability per album: most global, some regional (where the language is spoken),
    some global with a few licensing gaps. The home market always has it."""
    n = len(country)
    bits = (rng.random((n, M.N_MARKETS)) < 0.3) * (1 << np.arange(M.N_MARKETS))
    extra = bits.sum(axis=1).astype(np.int32)
    gaps = ((rng.random((n, M.N_MARKETS)) < 0.15) * (1 << np.arange(M.N_MARKETS))).sum(axis=1)
    kind = rng.random(n)
    regional = _language_markets()[language] | extra
    masks = np.where(
        kind < 0.65, ALL_MARKETS, np.where(kind < 0.85, regional, ALL_MARKETS & ~gaps)
    ).astype(np.int32)
    return masks | (1 << country.astype(np.int32))


def _past_days(rng: np.random.Generator, n: int, median: float) -> np.ndarray:
    """Release days before the window (negative offsets), lognormal around `median` days ago."""
    ago = 1 + rng.lognormal(math.log(median), 1.0, size=n)
    return -np.minimum(ago, 20_000).astype(np.int32)


def _audio(rng: np.random.Generator, genre: np.ndarray) -> np.ndarray:
    """Audio features around each genre's centre, clipped to their contract ranges."""
    centres = np.array([M.AUDIO_CENTRE[g] for g in D.MUSIC_GENRES])
    noise = rng.normal(0, 1, size=(len(genre), 6)) * np.array([0.1, 0.1, 0.15, 12, 0.1, 0.03])
    audio = centres[genre] + noise
    audio[:, [0, 1, 2, 4, 5]] = audio[:, [0, 1, 2, 4, 5]].clip(0, 1)
    audio[:, 3] = audio[:, 3].clip(50, 220)
    return audio.astype(np.float32)


def _tags(genre: np.ndarray, language: np.ndarray, audio: np.ndarray, episode: bool) -> np.ndarray:
    """Space-separated descriptive tags: genre, mood (from valence/energy) and language."""
    genre_names = np.array(D.GENRES)[genre]
    lang_names = np.array(D.LANGUAGES)[language]
    if episode:
        mood = np.full(len(genre), "podcast")
    else:
        valence, energy = audio[:, 2], audio[:, 1]
        mood = np.select(
            [energy > 0.8, (valence > 0.6) & (energy > 0.55), energy < 0.45, valence < 0.35],
            ["energetic", "upbeat", "chill", "melancholic"],
            "mellow",
        )
    return np.char.add(
        np.char.add(np.char.add(genre_names, " "), mood), np.char.add(" ", lang_names)
    )


def _explicit(
    rng: np.random.Generator, genre: np.ndarray, album: np.ndarray, n_albums: int
) -> np.ndarray:
    """Explicit flags: an album leans explicit with its genre's share, then its tracks follow."""
    share = np.zeros(len(D.GENRES))
    for g, s in M.EXPLICIT_SHARE.items():
        share[M.GENRE_INDEX[g]] = s
    leaning = rng.random(n_albums)
    album_genre = np.zeros(n_albums, dtype=np.int64)
    album_genre[album] = genre
    explicit_album = leaning < share[album_genre]
    p = np.where(explicit_album[album], 0.75, 0.02)
    return rng.random(len(genre)) < p


def build_catalogue(sim: SimulatorSettings, rng: np.random.Generator) -> Catalogue:
    """Draw the whole catalogue (artists, albums, tracks, shows, episodes) for a world."""
    n_pub = 0 if sim.episodes == 0 else int(np.clip(round(sim.artists * 0.06), 1, sim.artists - 1))
    n_pub = min(n_pub, sim.episodes)
    n_music = sim.artists - n_pub
    n_artists = sim.artists

    # --- artists -------------------------------------------------------------------------
    producer_weight = M.user_market_share() * np.where(
        np.isin(np.arange(M.N_MARKETS), [M.MARKET_INDEX["US"], M.MARKET_INDEX["GB"]]), 2.0, 1.0
    )
    producer_weight /= producer_weight.sum()
    country = rng.choice(M.N_MARKETS, size=n_artists, p=producer_weight).astype(np.int8)
    genre = _choose_rows(rng, M.market_genre_mix(), country[:n_music]).astype(np.int16)
    pod_genre = M.PODCAST_GENRE_CODES[rng.integers(0, len(M.PODCAST_GENRE_CODES), size=n_pub)]
    artist_genre = np.concatenate([genre, pod_genre]).astype(np.int16)
    artist_language = _languages(rng, artist_genre, country)
    artist_pop = rng.normal(0, 1, size=n_artists).astype(np.float32)

    track_counts = _split_counts(rng, sim.tracks, rng.pareto(1.3, size=n_music) + 1)
    episode_counts = _split_counts(rng, sim.episodes, rng.pareto(1.5, size=n_pub) + 1)
    counts = np.concatenate([track_counts, episode_counts]).astype(np.int32)
    item_start = (np.cumsum(counts) - counts).astype(np.int32)

    # --- items ---------------------------------------------------------------------------
    n_items = sim.tracks + sim.episodes
    item_artist = np.repeat(np.arange(n_artists, dtype=np.int32), counts)
    is_episode = np.zeros(n_items, dtype=bool)
    is_episode[sim.tracks :] = True

    album_sizes = (
        np.array([1, 4, 5, 6, 8, 10, 12, 14]),
        np.array([0.35, 0.1, 0.1, 0.05, 0.1, 0.12, 0.1, 0.08]),
    )
    show_sizes = (np.array([5, 10, 20, 40]), np.array([0.3, 0.3, 0.25, 0.15]))
    album_starts = _groups(rng, track_counts, album_sizes)
    show_starts = _groups(rng, episode_counts, show_sizes) + sim.tracks
    starts = np.concatenate([album_starts, show_starts]).astype(np.int64)
    n_albums = len(starts)
    album_of = np.searchsorted(starts, np.arange(n_items), side="right") - 1
    album_len = np.diff(np.concatenate([starts, [n_items]]))
    album_artist = item_artist[starts]
    album_is_show = starts >= sim.tracks

    album_new = rng.random(n_albums) < sim.new_release_share
    album_release = np.where(
        album_new, rng.integers(0, sim.days, size=n_albums), _past_days(rng, n_albums, 900)
    ).astype(np.int32)
    album_markets = _album_markets(rng, country[album_artist], artist_language[album_artist])
    album_markets[album_is_show] = ALL_MARKETS
    album_ids = ids.hex_ids(rng, n_albums, "b", 12)

    item_genre = artist_genre[item_artist]
    item_language = artist_language[item_artist]
    release = album_release[album_of].copy()
    # Episodes come out one by one, not per show.
    ep_new = rng.random(sim.episodes) < sim.new_release_share
    release[sim.tracks :] = np.where(
        ep_new, rng.integers(0, sim.days, size=sim.episodes), _past_days(rng, sim.episodes, 120)
    )
    new_item = release >= 0

    duration = np.empty(n_items, dtype=np.int64)
    classical = item_genre[: sim.tracks] == M.GENRE_INDEX["classical"]
    track_ms = rng.lognormal(math.log(205_000), 0.22, size=sim.tracks)
    track_ms = np.where(classical, rng.lognormal(math.log(360_000), 0.5, size=sim.tracks), track_ms)
    duration[: sim.tracks] = track_ms.clip(75_000, 5_400_000)
    duration[sim.tracks :] = rng.lognormal(math.log(2_400_000), 0.5, size=sim.episodes).clip(
        300_000, 14_400_000
    )

    explicit = _explicit(rng, item_genre, album_of, n_albums)
    audio = np.full((n_items, 6), np.nan, dtype=np.float32)
    audio[: sim.tracks] = _audio(rng, item_genre[: sim.tracks])
    tags = np.concatenate(
        [
            _tags(
                item_genre[: sim.tracks], item_language[: sim.tracks], audio[: sim.tracks], False
            ),
            _tags(item_genre[sim.tracks :], item_language[sim.tracks :], audio[sim.tracks :], True),
        ]
    )
    titles = np.concatenate([ids.names(rng, sim.tracks, 2), ids.names(rng, sim.episodes, 3)])

    popularity = (
        POPULARITY_SCALE * (0.6 * artist_pop[item_artist] + 0.8 * rng.normal(0, 1, size=n_items))
        + NEW_RELEASE_BOOST * new_item
    )
    popularity = popularity.astype(np.float32)

    # Evergreen hits: old, clean, everywhere (so every listener has something playable).
    n_evergreen = max(1, math.ceil(EVERGREEN_SHARE * sim.tracks))
    evergreen_items = np.argsort(-popularity[: sim.tracks], kind="stable")[:n_evergreen]
    evergreen = np.zeros(n_items, dtype=bool)
    evergreen[evergreen_items] = True
    ever_albums = np.unique(album_of[evergreen_items])
    album_markets[ever_albums] = ALL_MARKETS
    album_release[ever_albums] = np.minimum(album_release[ever_albums], -30)
    in_ever_album = np.isin(album_of, ever_albums) & ~is_episode
    release[in_ever_album] = album_release[album_of[in_ever_album]]
    explicit[evergreen_items] = False
    popularity[in_ever_album] -= NEW_RELEASE_BOOST * new_item[in_ever_album]

    debut = np.full(n_artists, np.iinfo(np.int32).max, dtype=np.int64)
    np.minimum.at(debut, item_artist, release)
    no_items = debut == np.iinfo(np.int32).max
    debut[no_items] = _past_days(rng, int(no_items.sum()), 2000)
    debut = np.where(rng.random(n_artists) < 0.05, NULL_DAY, debut).astype(np.int32)

    return Catalogue(
        artist_ids=ids.hex_ids(rng, n_artists, "a", 12),
        artist_names=ids.person_names(rng, n_artists),
        artist_country=country,
        artist_genre=artist_genre,
        artist_language=artist_language,
        artist_debut=debut,
        artist_popularity=artist_pop,
        artist_item_start=item_start,
        artist_item_count=counts,
        item_ids=np.concatenate(
            [ids.hex_ids(rng, sim.tracks, "t", 12), ids.hex_ids(rng, sim.episodes, "e", 12)]
        ),
        item_is_episode=is_episode,
        item_titles=titles,
        item_artist=item_artist,
        item_album_ids=album_ids[album_of],
        item_album_start=starts[album_of].astype(np.int32),
        item_album_len=album_len[album_of].astype(np.int32),
        item_genre=item_genre.astype(np.int16),
        item_language=item_language.astype(np.int16),
        item_release_day=release.astype(np.int32),
        item_duration_ms=duration,
        item_explicit=explicit,
        item_audio=audio,
        item_tags=tags,
        item_markets=album_markets[album_of].astype(np.int32),
        item_popularity=popularity,
        item_evergreen=evergreen,
        ad_ids=ids.hex_ids(rng, N_ADS, "ad", 10),
    )
