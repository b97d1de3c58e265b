"""The latent taste model: the hidden vectors that decide who likes what.

Every genre and language has a centroid in a `latent_dim`-dimensional space. An artist sits
near its genre and language centroids, its tracks near the artist. A listener is a mix of one
to three favourite genres (drawn from their market's genre mix), their language, a little
English (which everyone hears), and podcast genres for podcast listeners. The true affinity of
a listener for an item is `user_factors @ item_factors + item_bias`; it is scaled so that over
random (listener, item) pairs it has mean ~0 and standard deviation ~1, which keeps the
response model's coefficients readable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossfade.config import SimulatorSettings
from crossfade.data import domains as D
from crossfade.data.simulator import markets as M
from crossfade.data.simulator.catalogue import Catalogue
from crossfade.data.simulator.listeners import Listeners

QUALITY_SD = 0.35  # item-level "quality" that every listener feels (part of item_bias)
SCALE_SAMPLE = 20_000  # random pairs used to standardise affinities


@dataclass
class Latent:
    """Ground-truth vectors and biases (float32)."""

    genre_centroids: np.ndarray  # (genres, dim)
    language_centroids: np.ndarray  # (languages, dim)
    artist_factors: np.ndarray  # (artists, dim)
    item_factors: np.ndarray  # (items, dim)
    item_bias: np.ndarray  # (items,)
    user_factors: np.ndarray  # (users, dim)

    def affinity_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True affinity of each (users[k], items[k]) pair, in chunks to bound memory."""
        out = np.empty(len(users), dtype=np.float32)
        step = 262_144
        for lo in range(0, len(users), step):
            u = self.user_factors[users[lo : lo + step]]
            v = self.item_factors[items[lo : lo + step]]
            out[lo : lo + step] = (
                np.einsum("ij,ij->i", u, v) + self.item_bias[items[lo : lo + step]]
            )
        return out

    def affinity_matrix(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """True affinity of every listener in `users` for every item (or the given items)."""
        factors = self.item_factors if items is None else self.item_factors[items]
        bias = self.item_bias if items is None else self.item_bias[items]
        return np.asarray(self.user_factors[users] @ factors.T + bias[None, :], dtype=np.float32)


def _taste_genres(rng: np.random.Generator, country: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Up to three favourite music genres per listener (from their market's mix) and weights."""
    mix = M.market_genre_mix()
    cdf = np.cumsum(mix, axis=1)
    picks = (rng.random((len(country), 3))[:, :, None] > cdf[country][:, None, :]).sum(axis=2)
    picks = picks.clip(0, M.N_MUSIC_GENRES - 1)
    count = rng.choice([1, 2, 3], size=len(country), p=[0.35, 0.4, 0.25])
    weights = rng.dirichlet(np.ones(3), size=len(country)) * (
        np.arange(3)[None, :] < count[:, None]
    )
    weights /= weights.sum(axis=1, keepdims=True)
    return picks, weights


def build_latent(
    sim: SimulatorSettings, cat: Catalogue, lis: Listeners, rng: np.random.Generator
) -> Latent:
    """Draw centroids, artist/item/listener vectors and item biases, then standardise."""
    dim = sim.latent_dim
    genres = rng.normal(0, 1, size=(len(D.GENRES), dim))
    languages = rng.normal(0, 0.8, size=(len(D.LANGUAGES), dim))
    languages[M.LANGUAGE_INDEX["instrumental"]] *= 0.3

    artists = (
        genres[cat.artist_genre]
        + 0.8 * languages[cat.artist_language]
        + 0.5 * rng.normal(0, 1, size=(len(cat.artist_ids), dim))
    )
    items = artists[cat.item_artist] + 0.45 * rng.normal(0, 1, size=(len(cat.item_ids), dim))

    picks, weights = _taste_genres(rng, lis.country)
    users = np.einsum("uk,ukd->ud", weights, genres[picks])
    users += 0.8 * languages[lis.language] + 0.3 * languages[M.LANGUAGE_INDEX["en"]]
    pod = M.PODCAST_GENRE_CODES[rng.integers(0, len(M.PODCAST_GENRE_CODES), size=lis.n)]
    users += 0.7 * lis.podcast_listener[:, None] * genres[pod]
    users += 0.5 * rng.normal(0, 1, size=(lis.n, dim))

    su = rng.integers(0, lis.n, size=SCALE_SAMPLE)
    si = rng.integers(0, len(cat.item_ids), size=SCALE_SAMPLE)
    raw = np.einsum("ij,ij->i", users[su], items[si])
    scale = float(raw.std()) or 1.0
    users /= scale
    quality = rng.normal(0, QUALITY_SD, size=len(cat.item_ids))
    bias = quality - raw.mean() / scale
    return Latent(
        genre_centroids=genres.astype(np.float32),
        language_centroids=languages.astype(np.float32),
        artist_factors=artists.astype(np.float32),
        item_factors=items.astype(np.float32),
        item_bias=bias.astype(np.float32),
        user_factors=users.astype(np.float32),
    )
