"""Content embeddings of items and content profiles of listeners.

`ContentModel` turns catalogue rows into unit vectors built from what is known about an item
before anyone has played it, so it also covers new releases and new artists:

| block | what | weight (share of the squared norm) |
|---|---|---|
| audio | the six audio features, standardised (z-scores clipped to +-4, nulls -> mean) | 0.25 |
| genre | one-hot over `domains.GENRES` | 0.20 |
| artist | a hashed 16-d random unit vector per artist id (same artist, same vector) | 0.20 |
| text | TF-IDF of title + tags + genre words, reduced by TruncatedSVD, row-normalised | 0.20 |
| language | one-hot over `domains.LANGUAGES` | 0.10 |
| content type | one-hot over `domains.CONTENT_TYPES` | 0.05 |

Each block has unit norm on average (one-hots and hashed / SVD rows exactly, audio in
expectation: the z-scores are divided by sqrt(6)), is multiplied by sqrt(weight), and the
concatenation is L2-normalised, so the cosine of two items is the weighted sum of the blocks'
cosines and no block dominates. The weights are `BLOCK_WEIGHTS`.

`content_profiles` averages the vectors of what each listener played, recent plays weighing
more, so "more like what you listen to lately" is one inner product away.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data.lake import atomic_write_bytes

FORMAT_VERSION = 1
MODEL_FILE = "content_model.npz"
ARTIST_DIM = 16
AUDIO_CLIP = 4.0
BLOCK_WEIGHTS: dict[str, float] = {
    "audio": 0.25,
    "genre": 0.20,
    "artist": 0.20,
    "text": 0.20,
    "language": 0.10,
    "content_type": 0.05,
}
# Content profiles: a skipped play says "not this", a save or playlist add says "more of this".
SKIP_WEIGHT = 0.2
SAVE_WEIGHT = 3.0
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
REQUIRED_COLUMNS = (C.ARTIST_ID, C.GENRE, C.LANGUAGE, C.CONTENT_TYPE, C.TITLE)
_EPS = 1e-12


class ContentModelError(ValueError):
    """Bad input to the content model; the message names the input and the fix."""


def _check_items(items: pd.DataFrame, what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in items.columns]
    if missing:
        raise ContentModelError(
            f"{what}: the items frame lacks column(s) {missing}; pass rows of the items "
            "contract (crossfade.data.contracts.ITEMS)"
        )


def _text(items: pd.DataFrame) -> pd.Series:
    """The document of each item: title, tags and the genre (also split into words)."""
    genre = items[C.GENRE].fillna("").astype(str)
    tags = items[C.TAGS].fillna("").astype(str) if C.TAGS in items.columns else ""
    title = items[C.TITLE].fillna("").astype(str)
    return title + " " + tags + " " + genre + " " + genre.str.replace("_", " ", regex=False)


def _one_hot(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    """One-hot rows over a fixed vocabulary; a value outside it gets an all-zero row."""
    codes = pd.Categorical(values.astype(str), categories=list(vocabulary)).codes
    out = np.zeros((len(values), len(vocabulary)), dtype=np.float32)
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A fast, well-mixed 64-bit hash (vectorised; wraps around on purpose)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def artist_vectors(
    artist_ids: pd.Series | np.ndarray, seed: int, dim: int = ARTIST_DIM
) -> np.ndarray:
    """A deterministic random unit vector per artist id (hashed, so unseen artists get one too).

    Tracks of one artist share it, which pulls them together; two different artists are
    nearly orthogonal. Stable across processes (pandas' keyed hash, not Python's `hash`).
    """
    values = pd.Series(np.asarray(artist_ids, dtype=object)).fillna("").astype(str)
    uniques, inverse = np.unique(values.to_numpy(dtype=str), return_inverse=True)
    base = pd.util.hash_array(uniques.astype(object), hash_key="crossfade-artist")
    with np.errstate(over="ignore"):
        salted = base ^ _splitmix64(np.array([seed], dtype=np.uint64))
        cols = np.arange(dim, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
        bits = _splitmix64(salted[:, None] + cols[None, :])
    # 53 random bits -> uniform in [-1, 1)
    unit = (bits >> np.uint64(11)).astype(np.float64) * (2.0**-53) * 2.0 - 1.0
    unit /= np.linalg.norm(unit, axis=1, keepdims=True) + _EPS
    return unit[inverse].astype(np.float32)


def _row_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, _EPS)).astype(np.float32)


@dataclass
class ContentModel:
    """Fitted state of the content embedding (see the module docstring for the blocks)."""

    seed: int
    dim: int
    audio_mean: np.ndarray  # (6,) training mean per audio feature (0 when all null)
    audio_std: np.ndarray  # (6,) training sd per audio feature (1 when constant or null)
    vocabulary: np.ndarray  # (V,) str, TF-IDF terms in column order
    idf: np.ndarray  # (V,) float64 inverse document frequencies
    svd_components: np.ndarray  # (text_dim, V) float64; text_dim may be 0

    @property
    def text_dim(self) -> int:
        """Number of text components (<= `dim`, capped by what the vocabulary allows)."""
        return int(self.svd_components.shape[0])

    @property
    def output_dim(self) -> int:
        """Length of every embedding."""
        return (
            len(C.AUDIO_FEATURES)
            + len(D.GENRES)
            + len(D.LANGUAGES)
            + len(D.CONTENT_TYPES)
            + ARTIST_DIM
            + self.text_dim
        )

    # --- fit / transform -----------------------------------------------------------------
    @classmethod
    def fit(cls, items: pd.DataFrame, dim: int, seed: int) -> ContentModel:
        """Learn audio standardisation, the text vocabulary and its SVD from a catalogue."""
        _check_items(items, "ContentModel.fit")
        if len(items) == 0:
            raise ContentModelError(
                "ContentModel.fit: the items frame is empty; fit on a catalogue"
            )
        if dim < 1:
            raise ContentModelError(f"ContentModel.fit: dim must be >= 1, got {dim}")
        audio = cls._audio_matrix(items)
        # All-null columns (imported catalogues) warn "mean of empty slice": expected here.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(audio, axis=0)
            std = np.nanstd(audio, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)

        docs = _text(items)
        vectorizer = TfidfVectorizer(
            token_pattern=TOKEN_PATTERN, sublinear_tf=True, dtype=np.float64
        )
        try:
            vectorizer.fit(docs)
            vocab = np.array(vectorizer.get_feature_names_out(), dtype=str)
            idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        except ValueError:  # empty vocabulary (no text at all)
            vocab, idf = np.array([], dtype=str), np.array([], dtype=np.float64)
        model = cls(
            seed=seed,
            dim=dim,
            audio_mean=mean.astype(np.float64),
            audio_std=std.astype(np.float64),
            vocabulary=vocab,
            idf=idf,
            svd_components=np.zeros((0, len(vocab)), dtype=np.float64),
        )
        n_components = min(dim, len(vocab) - 1, len(items) - 1)
        if n_components >= 1:
            tfidf = model._tfidf(docs)
            svd = TruncatedSVD(n_components=n_components, algorithm="randomized", random_state=seed)
            svd.fit(tfidf)
            components = svd.components_.astype(np.float64)
            # Sign convention: the largest-magnitude loading of each component is positive, so
            # the basis (and thus every embedding) does not flip between library versions.
            signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
            model.svd_components = components * signs[:, None]
        return model

    @staticmethod
    def _audio_matrix(items: pd.DataFrame) -> np.ndarray:
        cols = [
            pd.to_numeric(items[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if name in items.columns
            else np.full(len(items), np.nan)
            for name in C.AUDIO_FEATURES
        ]
        return np.column_stack(cols) if cols else np.zeros((len(items), 0))

    def _tfidf(self, docs: pd.Series) -> sp.csr_matrix:
        """TF-IDF rows (sublinear tf, L2-normalised) over the fitted vocabulary."""
        counter = CountVectorizer(
            token_pattern=TOKEN_PATTERN, vocabulary={t: i for i, t in enumerate(self.vocabulary)}
        )
        counts = counter.transform(docs).astype(np.float64).tocsr()
        counts.data = 1.0 + np.log(counts.data)
        weighted = counts @ sp.diags(self.idf)
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, _EPS)) @ weighted)

    def transform(self, items: pd.DataFrame) -> np.ndarray:
        """Embed items (seen at fit or not): float32, one L2-normalised row per item, in order."""
        _check_items(items, "ContentModel.transform")
        n = len(items)
        audio = self._audio_matrix(items)
        z = (audio - self.audio_mean) / self.audio_std
        z = np.nan_to_num(z, nan=0.0).clip(-AUDIO_CLIP, AUDIO_CLIP) / np.sqrt(len(C.AUDIO_FEATURES))
        blocks: dict[str, np.ndarray] = {
            "audio": z.astype(np.float32),
            "genre": _one_hot(items[C.GENRE], D.GENRES),
            "language": _one_hot(items[C.LANGUAGE], D.LANGUAGES),
            "content_type": _one_hot(items[C.CONTENT_TYPE], D.CONTENT_TYPES),
            "artist": artist_vectors(items[C.ARTIST_ID].to_numpy(), self.seed),
        }
        if self.text_dim and n:
            text = np.asarray(self._tfidf(_text(items)) @ self.svd_components.T)
            blocks["text"] = _row_normalise(text)
        else:
            blocks["text"] = np.zeros((n, self.text_dim), dtype=np.float32)
        order = ("audio", "genre", "language", "content_type", "artist", "text")
        out = np.hstack([blocks[b] * np.float32(np.sqrt(BLOCK_WEIGHTS[b])) for b in order])
        return _row_normalise(out)

    # --- persistence -----------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the model to `folder/content_model.npz` atomically (no pickles); returns it."""
        meta = {"format_version": FORMAT_VERSION, "seed": self.seed, "dim": self.dim}
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.array(json.dumps(meta)),
            audio_mean=self.audio_mean,
            audio_std=self.audio_std,
            vocabulary=self.vocabulary.astype(str),
            idf=self.idf,
            svd_components=self.svd_components,
        )
        path = Path(folder) / MODEL_FILE
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, folder: Path) -> ContentModel:
        """Read a model written by `save`."""
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise ContentModelError(f"no content model at {path}; train one and save it first")
        with np.load(path, allow_pickle=False) as data:
            meta: dict[str, Any] = json.loads(str(data["meta"]))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ContentModelError(
                    f"{path} has format {meta.get('format_version')}, expected {FORMAT_VERSION}; "
                    "retrain the content model"
                )
            return cls(
                seed=int(meta["seed"]),
                dim=int(meta["dim"]),
                audio_mean=data["audio_mean"],
                audio_std=data["audio_std"],
                vocabulary=data["vocabulary"],
                idf=data["idf"],
                svd_components=data["svd_components"],
            )


def _utc_us(now: datetime) -> int:
    """Microseconds since the epoch of a datetime (naive means UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return int(now.timestamp() * 1_000_000)


def _ts_us(ts: pd.Series) -> np.ndarray:
    """Event timestamps as int64 microseconds since the epoch (UTC)."""
    values = pd.to_datetime(ts, utc=True).dt.tz_convert(None)
    return values.to_numpy(dtype="datetime64[us]").view(np.int64)


def _flag(events: pd.DataFrame, name: str) -> np.ndarray:
    if name not in events.columns:
        return np.zeros(len(events), dtype=bool)
    return events[name].fillna(False).to_numpy(dtype=bool)


def content_profiles(
    events: pd.DataFrame,
    item_ids: Sequence[str],
    item_vectors: np.ndarray,
    now: datetime,
    half_life_days: float,
) -> tuple[list[str], np.ndarray]:
    """Each listener's taste in content space: a recency-weighted mean of what they played.

    A play weighs `0.5 ** (age_days / half_life_days)`, times `SKIP_WEIGHT` (0.2) when skipped
    and `SAVE_WEIGHT` (3.0) when saved or added to a playlist. Plays after `now` and of items
    not in `item_ids` are ignored. Returns listener ids (sorted) and their L2-normalised
    float32 profiles, one row each.
    """
    for col in (C.USER_ID, C.ITEM_ID, C.TS):
        if col not in events.columns:
            raise ContentModelError(
                f"content_profiles: the events frame lacks column {col!r}; pass events rows"
            )
    if half_life_days <= 0:
        raise ContentModelError(
            f"content_profiles: half_life_days must be > 0, got {half_life_days}"
        )
    vectors = np.asarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(item_ids):
        raise ContentModelError(
            f"content_profiles: item_vectors has shape {vectors.shape} but there are "
            f"{len(item_ids)} item ids; pass one vector per id"
        )
    idx = pd.Index(item_ids).get_indexer(pd.Index(events[C.ITEM_ID]))
    ts = _ts_us(events[C.TS])
    now_us = _utc_us(now)
    keep = (idx >= 0) & (ts <= now_us)
    if not keep.any():
        return [], np.zeros((0, vectors.shape[1]), dtype=np.float32)
    age_days = (now_us - ts[keep]) / 86_400_000_000
    weight = np.power(0.5, age_days / half_life_days)
    weight = weight * np.where(_flag(events, C.SKIPPED)[keep], SKIP_WEIGHT, 1.0)
    engaged = _flag(events, C.SAVED)[keep] | _flag(events, C.ADDED_TO_PLAYLIST)[keep]
    weight = weight * np.where(engaged, SAVE_WEIGHT, 1.0)
    codes, users = pd.factorize(events[C.USER_ID].to_numpy()[keep], sort=True)
    matrix = sp.csr_matrix(
        (weight, (codes, idx[keep])), shape=(len(users), len(item_ids)), dtype=np.float64
    )
    profiles = np.asarray(matrix @ vectors.astype(np.float64))
    return [str(u) for u in users], _row_normalise(profiles)
