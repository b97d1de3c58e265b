"""What each listener tends to play: personal rotations, fallbacks and daily market charts.

A listener's rotation is a sample (with replacement) of `ROTATION_SIZE` tracks from
`softmax(popularity + market exposure + TASTE_WEIGHT * affinity)` over the tracks they may
play (available in their market; explicit hidden by a parental filter, penalised for other
minors). Drawing plays from a finite rotation reproduces what real logs show: people replay a
personal set, popular tracks are in many sets, and the long tail is reached only now and then.
Market exposure gives local language, local genres and home-grown artists more air time.
Market charts (popularity, exposure and the market's average taste) feed editorial contexts.
Everything is vectorised in chunks of listeners so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossfade.data.simulator import markets as M
from crossfade.data.simulator.world import World

ROTATION_SIZE = 192
EPISODE_ROTATION = 8
TASTE_WEIGHT = 1.6
MINOR_EXPLICIT_PENALTY = 2.0
CHART_TASTE = 0.8
LANGUAGE_EXPOSURE = 1.2  # per unit share of the market's listeners speaking the language
GENRE_EXPOSURE = 0.8  # per unit log ratio of the market's genre share to the average
HOME_EXPOSURE = 0.4  # artists from the market
CHUNK_CELLS = 2_000_000  # listeners x items per chunk


@dataclass
class Rotation:
    """Per-listener candidate plays (indices into the catalogue's items)."""

    music: np.ndarray  # int32 (users, ROTATION_SIZE), most liked first
    fallback: np.ndarray  # int32 (users,), a track always playable for the listener
    episodes: np.ndarray  # int32 (users, EPISODE_ROTATION) or (users, 0)
    episode_fallback: np.ndarray  # int32 (users,), -1 if no episode is playable
    market_taste: np.ndarray  # float32 (markets, dim): mean listener vector per market
    exposure: np.ndarray  # float32 (markets, items): see `market_exposure`


def draw_rows(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws, one per k: the first column j with cdf[rows[k], j] > u[k].

    `cdf` rows must be normalised cumulative sums ending at exactly 1; offsetting each row by
    its index makes the whole matrix one sorted array, so one searchsorted does every row.
    """
    n = cdf.shape[1]
    flat = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
    pos = np.searchsorted(flat, rows + u, side="right")
    return np.asarray((pos - rows * n).clip(0, n - 1))


def _normalised_cdf(logw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise cumulative distribution of exp(logw) and whether each row has any mass."""
    top = logw.max(axis=1, keepdims=True)
    ok = np.isfinite(top[:, 0])
    w = np.exp(logw - np.where(ok[:, None], top, 0.0))
    cdf = np.cumsum(w, axis=1)
    total = cdf[:, -1:]
    cdf = np.where(ok[:, None], cdf / np.where(total > 0, total, 1.0), 1.0)
    return cdf, ok


def _market_table(masks: np.ndarray) -> np.ndarray:
    """Availability as a (markets, items) boolean table from per-item bit masks."""
    return ((masks[None, :] >> np.arange(M.N_MARKETS)[:, None]) & 1).astype(bool)


def market_exposure(world: World) -> np.ndarray:
    """Extra log exposure of every item in every market, shape (markets, items): local
    language, the market's genre leanings and home-grown artists get more air time."""
    cat = world.catalogue
    lang_share = M.market_language_mix()[:, cat.item_language]
    mix = M.market_genre_mix()
    lean = np.log(mix / mix.mean(axis=0, keepdims=True))
    music = cat.item_genre < M.N_MUSIC_GENRES
    genre = np.zeros((M.N_MARKETS, len(cat.item_ids)))
    genre[:, music] = lean[:, cat.item_genre[music]]
    home = cat.artist_country[cat.item_artist][None, :] == np.arange(M.N_MARKETS)[:, None]
    out = LANGUAGE_EXPOSURE * lang_share + GENRE_EXPOSURE * genre + HOME_EXPOSURE * home
    return np.asarray(out, dtype=np.float32)


def _market_taste(world: World) -> np.ndarray:
    lis, lat = world.listeners, world.latent
    taste = np.zeros((M.N_MARKETS, lat.user_factors.shape[1]), dtype=np.float32)
    for m in range(M.N_MARKETS):
        rows = (lis.country == m) & ~lis.is_bot
        if rows.any():
            taste[m] = lat.user_factors[rows].mean(axis=0)
    return taste


class _Weights:
    """Masked log sampling weights of listeners over a set of items, computed in chunks.

    log w = popularity + market exposure + TASTE_WEIGHT * affinity, -inf where the listener
    may not play the item (market, parental filter), minus a penalty on explicit items for
    other minors.
    """

    def __init__(self, world: World, items: np.ndarray, exposure: np.ndarray, music: bool) -> None:
        cat, lat = world.catalogue, world.latent
        self.lis = world.listeners
        self.user_factors = lat.user_factors
        self.factors = np.ascontiguousarray((lat.item_factors[items] * TASTE_WEIGHT).T)
        self.base = (cat.item_popularity[items] + TASTE_WEIGHT * lat.item_bias[items]).astype(
            np.float32
        )
        explicit = cat.item_explicit[items]
        available = _market_table(cat.item_markets[items])
        self.market_mask = np.where(available, exposure[:, items], -np.inf).astype(np.float32)
        self.filter_mask = np.where(explicit, -np.inf, 0).astype(np.float32)
        self.minor_penalty = (-MINOR_EXPLICIT_PENALTY * explicit * music).astype(np.float32)
        self.old_mask = np.where(cat.item_release_day[items] <= 0, 0, -np.inf).astype(np.float32)

    def __call__(self, rows: np.ndarray, market: int) -> np.ndarray:
        """Log weights of listeners `rows` (all in market `market`), shape (rows, items)."""
        logw = self.user_factors[rows] @ self.factors
        logw += self.base + self.market_mask[market]
        filtered = self.lis.explicit_filter[rows]
        if filtered.any():
            logw[filtered] += self.filter_mask
        minor = self.lis.is_minor[rows] & ~filtered
        if minor.any():
            logw[minor] += self.minor_penalty
        return np.asarray(logw)


def _sample(
    world: World,
    rng: np.random.Generator,
    items: np.ndarray,
    size: int,
    exposure: np.ndarray,
    music: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation of `size` draws from `items` for every listener, plus a fallback item.

    Listeners are processed market by market in chunks (one market mask per chunk); each
    row's draws are sorted uniforms so its searchsorted walks the CDF once.
    """
    lis, lat = world.listeners, world.latent
    n_users = lis.n
    out = np.zeros((n_users, size), dtype=np.int32)
    fallback = np.full(n_users, -1, dtype=np.int32)
    if len(items) == 0 or size == 0:
        return out, fallback
    weights = _Weights(world, items, exposure, music)
    chunk = max(1, CHUNK_CELLS // len(items))
    for market in range(M.N_MARKETS):
        members = np.flatnonzero(lis.country == market)
        for lo in range(0, len(members), chunk):
            rows = members[lo : lo + chunk]
            w = weights(rows, market)
            top = w.max(axis=1, keepdims=True)
            ok = np.isfinite(top[:, 0])
            w -= np.where(ok[:, None], top, 0)
            np.exp(w, out=w)
            np.cumsum(w, axis=1, out=w)
            targets = np.sort(rng.random((len(rows), size), dtype=np.float32), axis=1)
            targets *= w[:, -1:]
            picks = np.empty((len(rows), size), dtype=np.int64)
            for r in range(len(rows)):
                picks[r] = np.searchsorted(w[r], targets[r], side="right")
            picks = picks.clip(0, len(items) - 1)
            chosen = items[picks]
            aff = lat.affinity_pairs(np.repeat(rows, size), chosen.ravel()).reshape(picks.shape)
            order = np.argsort(-aff, axis=1, kind="stable")
            chosen = np.take_along_axis(chosen, order, axis=1)
            out[rows] = chosen
            # Fallback: the most liked old (always released) item of the rotation ...
            old = np.isfinite(weights.old_mask[np.take_along_axis(picks, order, axis=1)])
            has = old.any(axis=1) & ok
            fallback[rows[has]] = chosen[has, old[has].argmax(axis=1)]
            # ... else the heaviest old item the listener may play at all.
            rest = rows[~has & ok]
            if len(rest):
                logw = weights(rest, market) + weights.old_mask
                best = logw.argmax(axis=1)
                found = np.isfinite(logw[np.arange(len(rest)), best])
                fallback[rest[found]] = items[best[found]]
    return out, fallback


def build_rotation(world: World, rng: np.random.Generator) -> Rotation:
    """Draw every listener's music and episode rotation and their always-playable fallbacks."""
    cat = world.catalogue
    exposure = market_exposure(world)
    tracks = np.flatnonzero(~cat.item_is_episode)
    episodes = np.flatnonzero(cat.item_is_episode)
    music, fallback = _sample(world, rng, tracks, ROTATION_SIZE, exposure, music=True)
    size = EPISODE_ROTATION if len(episodes) else 0
    eps, ep_fallback = _sample(world, rng, episodes, size, exposure, music=False)
    if (fallback < 0).any():  # evergreens are playable everywhere, so this cannot happen
        fallback[fallback < 0] = int(np.flatnonzero(cat.item_evergreen)[0])
    return Rotation(music, fallback, eps, ep_fallback, _market_taste(world), exposure)


@dataclass
class Charts:
    """Per-market popularity charts of one day: row 2*m is market m, row 2*m+1 its clean
    (explicit-free) version for filtered listeners."""

    cdf: np.ndarray  # float64 (2 * markets, tracks)
    tracks: np.ndarray  # int32 track index of each column

    def draw(self, rng: np.random.Generator, market: np.ndarray, clean: np.ndarray) -> np.ndarray:
        """One chart track per (market, clean) pair."""
        rows = 2 * market.astype(np.int64) + clean
        return np.asarray(self.tracks[draw_rows(self.cdf, rows, rng.random(len(rows)))])


def daily_charts(world: World, rotation: Rotation, day: int) -> Charts:
    """Charts of window day `day`: released, available tracks weighted by popularity, market
    exposure and the market's average taste."""
    cat, lat = world.catalogue, world.latent
    tracks = np.flatnonzero(~cat.item_is_episode)
    taste = rotation.market_taste @ lat.item_factors[tracks].T + lat.item_bias[tracks]
    logw = cat.item_popularity[tracks][None, :] + rotation.exposure[:, tracks] + CHART_TASTE * taste
    avail = _market_table(cat.item_markets[tracks])
    released = cat.item_release_day[tracks] <= day
    full = np.where(avail & released[None, :], logw, -np.inf)
    clean = np.where(~cat.item_explicit[tracks][None, :], full, -np.inf)
    stacked = np.stack([full, clean], axis=1).reshape(2 * M.N_MARKETS, len(tracks))
    cdf, _ = _normalised_cdf(stacked)
    return Charts(cdf=cdf, tracks=tracks.astype(np.int32))
