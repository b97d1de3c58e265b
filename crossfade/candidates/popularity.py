"""Popularity tables and the popularity-based candidate sources.

`PopularityTables.fit` counts recent streams (plays of at least `STREAM_THRESHOLD_MS`, the
pay-out threshold) in a window ending at `now`, each weighted by `0.5 ** (age_days /
half_life_days)`, leaving out excluded (bot) accounts, plays after `now` and unknown items:

- global: per item;
- market: per (country of the play, item);
- cohort: per (country of the play, listener's age bucket, tier at the play, item);
- artist: the global table grouped by the item's artist (onboarding picks);
- episodes: the market table restricted to content_type "episode".

Thin tables borrow strength from the level above (empirical-Bayes shrinkage with a prior worth
`min_plays` decayed streams, default 50):

    p_global(i) = n_global(i) / N_global
    p_market(i) = (n_market(i) + min_plays * p_global(i)) / (N_market + min_plays)
    p_cohort(i) = (n_cohort(i) + min_plays * p_market(i)) / (N_cohort + min_plays)

So a cohort with no plays ranks exactly like its market and one with far fewer than
`min_plays` almost so; a market falls back to global the same way. Every score is a share of
listening, so sources can be compared and blended.

Availability: every source returns only items released by `now` and playable in the given
country (`items.available_markets` lists it). "ZZ" (unknown country) and any code outside
`domains.COUNTRIES` see only items available in every market of `domains.MARKETS`, the safe
choice when we do not know where the listener is. Explicit content is not filtered here (the
generator does it per listener); `explicit(item_ids)` looks the flag up.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data.lake import atomic_write_parquet, atomic_write_text

FORMAT_VERSION = 1
META_FILE = "popularity.json"
DEFAULT_WINDOW_DAYS = 28
DEFAULT_HALF_LIFE_DAYS = 7.0
DEFAULT_MIN_PLAYS = 50.0
# fresh releases: prior strength in days of exposure (see `fresh_releases`)
FRESH_PRIOR_DAYS = 1.0
EPISODE = "episode"
# Per source and key, the first CACHED_TOP items are ranked once and kept (serving speed).
CACHED_TOP = 1_000
SCORE = "score"
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_ITEM_COLUMNS = (
    C.ITEM_ID,
    C.ARTIST_ID,
    C.CONTENT_TYPE,
    C.RELEASE_DATE,
    C.EXPLICIT,
    C.AVAILABLE_MARKETS,
)

Ranked = tuple[list[str], np.ndarray]


class PopularityError(ValueError):
    """Bad input to the popularity tables; the message names the input and the fix."""


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PopularityError(
            f"PopularityTables: the {what} frame lacks column(s) {missing}; pass rows of the "
            f"{what} contract (crossfade.data.contracts)"
        )


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _day_number(values: pd.Series) -> np.ndarray:
    """Dates as int days since the epoch."""
    days = pd.to_datetime(values).to_numpy(dtype="datetime64[D]")
    return days.astype(np.int64)


def country_code(country: str) -> int:
    """Index of a country in `domains.COUNTRIES`; unknown codes map to "ZZ"."""
    try:
        return D.COUNTRIES.index(country)
    except ValueError:
        return D.COUNTRIES.index(D.UNKNOWN_COUNTRY)


def availability_matrix(available_markets: pd.Series) -> np.ndarray:
    """Bool (items, len(COUNTRIES)): playable per country; the ZZ column = every market."""
    text = "," + available_markets.fillna("").astype(str).str.replace(" ", "", regex=False) + ","
    out = np.zeros((len(text), len(D.COUNTRIES)), dtype=bool)
    for k, market in enumerate(D.MARKETS):
        out[:, k] = text.str.contains(f",{market},", regex=False).to_numpy()
    out[:, D.COUNTRIES.index(D.UNKNOWN_COUNTRY)] = out[:, : len(D.MARKETS)].all(axis=1)
    return out


def _top(scores: np.ndarray, eligible: np.ndarray, tiebreak: np.ndarray, k: int) -> np.ndarray:
    """Indices of the eligible items by score (desc), then tiebreak (desc), then index (asc)."""
    idx = np.flatnonzero(eligible)
    if k <= 0 or len(idx) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((idx, -tiebreak[idx], -scores[idx]))
    return idx[order[:k]]


@dataclass
class PopularityTables:
    """Decayed stream counts per level and the catalogue facts the sources filter on."""

    now: datetime
    window_days: int
    half_life_days: float
    min_plays: float
    catalogue: pd.DataFrame  # _ITEM_COLUMNS, sorted by item id
    global_counts: np.ndarray  # (items,) decayed streams
    market_counts: sp.csr_matrix  # (len(COUNTRIES), items)
    cohort_keys: pd.DataFrame  # country, age_bucket, tier per cohort row
    cohort_counts: sp.csr_matrix  # (cohorts, items)
    stats: dict[str, int] = field(default_factory=dict)
    _cache: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        cat = self.catalogue
        self.item_ids = cat[C.ITEM_ID].to_numpy(dtype=object)
        self._item_index = pd.Index(self.item_ids)
        self.artist_codes, self._artists = pd.factorize(cat[C.ARTIST_ID], sort=True)
        self.is_episode = (cat[C.CONTENT_TYPE] == EPISODE).to_numpy()
        self.release_day = _day_number(cat[C.RELEASE_DATE])
        self.explicit_flags = cat[C.EXPLICIT].fillna(False).to_numpy(dtype=bool)
        self.available = availability_matrix(cat[C.AVAILABLE_MARKETS])
        self.released = self.release_day <= (self.now.date() - _EPOCH).days
        self._cohort_index = {
            (r.country, r.age_bucket, r.tier): i
            for i, r in enumerate(self.cohort_keys.itertuples(index=False))
        }
        self.market_totals = np.asarray(self.market_counts.sum(axis=1)).ravel()
        self.cohort_totals = np.asarray(self.cohort_counts.sum(axis=1)).ravel()

    # --- fit -----------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        events: pd.DataFrame,
        users: pd.DataFrame,
        items: pd.DataFrame,
        now: datetime,
        window_days: int = DEFAULT_WINDOW_DAYS,
        exclude_users: Iterable[str] = frozenset(),
        half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
        min_plays: float = DEFAULT_MIN_PLAYS,
    ) -> PopularityTables:
        """Count decayed streams of the last `window_days` before `now` per level.

        `exclude_users` (e.g. accounts flagged as bots) contribute nothing. Plays of items not
        in `items`, after `now` or shorter than the stream threshold are ignored.
        """
        _require(events, (C.USER_ID, C.ITEM_ID, C.TS, C.MS_PLAYED, C.COUNTRY, C.TIER), "events")
        _require(users, (C.USER_ID, C.AGE_BUCKET), "users")
        _require(items, _ITEM_COLUMNS, "items")
        if window_days <= 0 or half_life_days <= 0 or min_plays < 0:
            raise PopularityError(
                "PopularityTables.fit: window_days and half_life_days must be > 0 and "
                f"min_plays >= 0 (got {window_days}, {half_life_days}, {min_plays})"
            )
        now = _utc(now)
        catalogue = (
            items.loc[:, list(_ITEM_COLUMNS)]
            .drop_duplicates(C.ITEM_ID, keep="last")
            .sort_values(C.ITEM_ID, kind="stable")
            .reset_index(drop=True)
        )
        n_items = len(catalogue)
        item_idx = pd.Index(catalogue[C.ITEM_ID]).get_indexer(pd.Index(events[C.ITEM_ID]))
        ts = (
            pd.to_datetime(events[C.TS], utc=True)
            .dt.tz_convert(None)
            .to_numpy(dtype="datetime64[us]")
            .view(np.int64)
        )
        now_us = int(now.timestamp() * 1_000_000)
        start_us = now_us - window_days * _US_PER_DAY
        excluded = events[C.USER_ID].isin(set(exclude_users)).to_numpy()
        in_window = (ts > start_us) & (ts <= now_us)
        stream = events[C.MS_PLAYED].to_numpy() >= D.STREAM_THRESHOLD_MS
        keep = in_window & stream & ~excluded & (item_idx >= 0)
        stats = {
            "events": len(events),
            "counted": int(keep.sum()),
            "excluded_user_plays": int((in_window & excluded).sum()),
            "unknown_item_plays": int((in_window & (item_idx < 0)).sum()),
            "outside_window": int((~in_window).sum()),
            "short_plays": int((in_window & ~stream).sum()),
        }
        idx = item_idx[keep]
        weight = np.power(0.5, (now_us - ts[keep]) / _US_PER_DAY / half_life_days)
        global_counts = np.bincount(idx, weights=weight, minlength=n_items)

        country = pd.Categorical(events[C.COUNTRY].to_numpy()[keep], categories=list(D.COUNTRIES))
        country_codes = np.where(
            country.codes >= 0, country.codes, D.COUNTRIES.index(D.UNKNOWN_COUNTRY)
        )
        market_counts = sp.csr_matrix(
            (weight, (country_codes, idx)), shape=(len(D.COUNTRIES), n_items)
        )
        user_age = users.drop_duplicates(C.USER_ID, keep="last").set_index(C.USER_ID)[C.AGE_BUCKET]
        age = pd.Index(user_age.index).get_indexer(pd.Index(events[C.USER_ID].to_numpy()[keep]))
        age_values = np.where(age >= 0, user_age.to_numpy(dtype=object)[age], D.UNKNOWN)
        keys = pd.DataFrame(
            {
                C.COUNTRY: np.asarray(D.COUNTRIES, dtype=object)[country_codes],
                C.AGE_BUCKET: age_values.astype(str),
                C.TIER: events[C.TIER].to_numpy()[keep].astype(str),
            }
        )
        cohort_codes, cohort_uniques = pd.MultiIndex.from_frame(keys).factorize(sort=True)
        cohort_keys = pd.DataFrame(
            list(cohort_uniques), columns=[C.COUNTRY, C.AGE_BUCKET, C.TIER], dtype=object
        )
        cohort_counts = sp.csr_matrix(
            (weight, (cohort_codes, idx)), shape=(len(cohort_keys), n_items)
        )
        return cls(
            now=now,
            window_days=window_days,
            half_life_days=half_life_days,
            min_plays=min_plays,
            catalogue=catalogue,
            global_counts=global_counts,
            market_counts=market_counts,
            cohort_keys=cohort_keys,
            cohort_counts=cohort_counts,
            stats=stats,
        )

    # --- shares (the shrunk scores) --------------------------------------------------------
    def global_share(self) -> np.ndarray:
        """p_global per item (share of all decayed streams)."""
        total = self.global_counts.sum()
        return self.global_counts / total if total > 0 else np.zeros_like(self.global_counts)

    def market_share(self, country: str) -> np.ndarray:
        """p_market per item: the market's share, shrunk towards global by `min_plays`."""
        key = ("market_share", country_code(country))
        if key not in self._cache:
            code = key[1]
            counts = self.market_counts.getrow(code).toarray().ravel()
            prior = self.min_plays * self.global_share()
            self._cache[key] = _shrink(counts, self.market_totals[code], prior, self.min_plays)
        return self._cache[key]

    def cohort_share(self, country: str, age_bucket: str, tier: str) -> np.ndarray:
        """p_cohort per item: the cohort's share, shrunk towards its market by `min_plays`."""
        code = country_code(country)
        row = self._cohort_index.get((D.COUNTRIES[code], age_bucket, tier))
        if row is None:
            return self.market_share(country)
        key = ("cohort_share", row)
        if key not in self._cache:
            counts = self.cohort_counts.getrow(row).toarray().ravel()
            prior = self.min_plays * self.market_share(country)
            self._cache[key] = _shrink(counts, self.cohort_totals[row], prior, self.min_plays)
        return self._cache[key]

    def playable(self, country: str) -> np.ndarray:
        """Bool per item: released by `now` and available in `country`."""
        return self.released & self.available[:, country_code(country)]

    def _order(
        self,
        key: tuple[Any, ...],
        scores: np.ndarray,
        eligible: Callable[[], np.ndarray],
        k: int,
    ) -> np.ndarray:
        """The top `k` of a source; the first CACHED_TOP per key are computed once and kept."""
        if k > CACHED_TOP:
            return _top(scores, eligible(), self.release_day, k)
        if key not in self._cache:
            self._cache[key] = _top(scores, eligible(), self.release_day, CACHED_TOP)
        return self._cache[key][:k]

    def _ranked(self, idx: np.ndarray, scores: np.ndarray) -> Ranked:
        return [str(i) for i in self.item_ids[idx]], scores[idx].astype(np.float64)

    # --- sources -----------------------------------------------------------------------------
    def popular_in_market(self, country: str, k: int) -> Ranked:
        """The most streamed items in a market (falling back to global when it is thin)."""
        scores = self.market_share(country)
        key = ("market", country_code(country))
        idx = self._order(key, scores, lambda: self.playable(country) & (scores > 0), k)
        return self._ranked(idx, scores)

    def global_top(self, country: str, k: int) -> Ranked:
        """The most streamed items overall that are playable in `country`."""
        scores = self.global_share()
        key = ("global", country_code(country))
        idx = self._order(key, scores, lambda: self.playable(country) & (scores > 0), k)
        return self._ranked(idx, scores)

    def cohort(self, country: str, age_bucket: str, tier: str, k: int) -> Ranked:
        """Most streamed by listeners like this one: (country, age bucket, tier).

        A cohort with fewer than `min_plays` decayed streams (or none) is thin and ranks like
        its market, which in turn ranks like global when thin (see the module docstring).
        """
        scores = self.cohort_share(country, age_bucket, tier)
        key = ("cohort", country_code(country), age_bucket, tier)
        idx = self._order(key, scores, lambda: self.playable(country) & (scores > 0), k)
        return self._ranked(idx, scores)

    def episodes(self, country: str, k: int) -> Ranked:
        """The most streamed podcast episodes in a market (falling back to global)."""
        scores = self.market_share(country)
        key = ("episodes", country_code(country))
        idx = self._order(
            key, scores, lambda: self.playable(country) & self.is_episode & (scores > 0), k
        )
        return self._ranked(idx, scores)

    def by_artists(self, artist_ids: Sequence[str], k: int, country: str | None = None) -> Ranked:
        """Items by the given artists (e.g. onboarding picks), most streamed first.

        With a `country`, only items playable there, scored by market share; without, items
        released anywhere, scored by global share. Unplayed items are included (score 0,
        newest first), so a picked artist with no streams still contributes.
        """
        codes = self._artists.get_indexer(pd.Index(list(artist_ids)))
        codes = codes[codes >= 0]
        in_artists = np.isin(self.artist_codes, codes)
        if country is None:
            scores, eligible = self.global_share(), self.released & in_artists
        else:
            scores, eligible = self.market_share(country), self.playable(country) & in_artists
        return self._ranked(_top(scores, eligible, self.release_day, k), scores)

    def fresh_releases(self, country: str, now: datetime, days: int, k: int) -> Ranked:
        """Items released in the `days` days up to `now`, playable in `country`, by early traction.

        Score = (decayed streams + FRESH_PRIOR_DAYS * prior) / (days out + FRESH_PRIOR_DAYS):
        a posterior daily stream rate whose prior is the artist's per-item daily rate (shrunk
        to the catalogue mean with one pseudo-item). A release nobody has played yet scores
        its prior, so it can still appear; one that stays unplayed sinks as days pass. Counts
        are the market's when it has `min_plays` streams, else global.
        """
        now = _utc(now)
        today = (now.date() - _EPOCH).days
        window = (self.release_day > today - days) & (self.release_day <= today)
        eligible = window & self.available[:, country_code(country)]
        code = country_code(country)
        if self.market_totals[code] >= self.min_plays and self.market_totals[code] > 0:
            counts = self.market_counts.getrow(code).toarray().ravel()
        else:
            counts = self.global_counts
        prior = self._artist_prior_rate(counts)
        release_us = self.release_day * _US_PER_DAY
        age_days = np.maximum(0.0, (now.timestamp() * 1e6 - release_us) / _US_PER_DAY)
        scores = (counts + FRESH_PRIOR_DAYS * prior) / (age_days + FRESH_PRIOR_DAYS)
        return self._ranked(_top(scores, eligible, self.release_day, k), scores)

    def _artist_prior_rate(self, counts: np.ndarray) -> np.ndarray:
        """Per item: its artist's daily streams per released item, shrunk to the mean item."""
        released = self.released.astype(np.float64)
        n_art = len(self._artists)
        art_plays = np.bincount(self.artist_codes, weights=counts, minlength=n_art)
        art_items = np.bincount(self.artist_codes, weights=released, minlength=n_art)
        mean_rate = counts.sum() / max(released.sum(), 1.0) / self.window_days
        rate = (art_plays / self.window_days + mean_rate) / (art_items + 1.0)
        return np.asarray(rate[self.artist_codes], dtype=np.float64)

    def explicit(self, item_ids: Sequence[str]) -> np.ndarray:
        """Explicit flag per item id (unknown ids are treated as explicit: the safe default)."""
        idx = self._item_index.get_indexer(pd.Index(list(item_ids)))
        return np.where(idx >= 0, self.explicit_flags[np.maximum(idx, 0)], True)

    # --- tables as frames (reports, features, tests) -------------------------------------------
    @property
    def global_table(self) -> pd.DataFrame:
        """item_id, score (decayed streams) for every streamed item, most streamed first."""
        nz = np.flatnonzero(self.global_counts)
        frame = pd.DataFrame({C.ITEM_ID: self.item_ids[nz], SCORE: self.global_counts[nz]})
        return frame.sort_values([SCORE, C.ITEM_ID], ascending=[False, True], ignore_index=True)

    @property
    def market_table(self) -> pd.DataFrame:
        """country, item_id, score (decayed streams of plays in that country)."""
        coo = self.market_counts.tocoo()
        frame = pd.DataFrame(
            {
                C.COUNTRY: np.asarray(D.COUNTRIES, dtype=object)[coo.row],
                C.ITEM_ID: self.item_ids[coo.col],
                SCORE: coo.data,
            }
        )
        return frame.sort_values(
            [C.COUNTRY, SCORE, C.ITEM_ID], ascending=[True, False, True], ignore_index=True
        )

    @property
    def cohort_table(self) -> pd.DataFrame:
        """country, age_bucket, tier, item_id, score (decayed streams of the cohort)."""
        coo = self.cohort_counts.tocoo()
        frame = self.cohort_keys.iloc[coo.row].reset_index(drop=True)
        frame[C.ITEM_ID] = self.item_ids[coo.col]
        frame[SCORE] = coo.data
        keys = [C.COUNTRY, C.AGE_BUCKET, C.TIER]
        return frame.sort_values(
            [*keys, SCORE, C.ITEM_ID], ascending=[True, True, True, False, True], ignore_index=True
        )

    @property
    def artist_table(self) -> pd.DataFrame:
        """artist_id, item_id, score (global decayed streams) for every item of every artist."""
        frame = pd.DataFrame(
            {
                C.ARTIST_ID: self.catalogue[C.ARTIST_ID].to_numpy(dtype=object),
                C.ITEM_ID: self.item_ids,
                SCORE: self.global_counts,
            }
        )
        return frame.sort_values(
            [C.ARTIST_ID, SCORE, C.ITEM_ID], ascending=[True, False, True], ignore_index=True
        )

    @property
    def episode_table(self) -> pd.DataFrame:
        """The market table restricted to podcast episodes."""
        table = self.market_table
        episodes = set(self.item_ids[self.is_episode])
        return table[table[C.ITEM_ID].isin(episodes)].reset_index(drop=True)

    # --- persistence --------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the tables (Parquet) and a JSON manifest naming them, atomically.

        The data files get a fresh suffix and the manifest is renamed into place last, so a
        reader sees the old tables or the new ones, never a mix; stale files are then removed.
        """
        folder = Path(folder)
        token = uuid.uuid4().hex[:12]
        files = {
            "catalogue": f"catalogue-{token}.parquet",
            "global": f"global-{token}.parquet",
            "market": f"market-{token}.parquet",
            "cohort": f"cohort-{token}.parquet",
        }
        atomic_write_parquet(
            pa.Table.from_pandas(self.catalogue, preserve_index=False), folder / files["catalogue"]
        )
        atomic_write_parquet(
            pa.table({C.ITEM_ID: self.item_ids.astype(str), SCORE: self.global_counts}),
            folder / files["global"],
        )
        atomic_write_parquet(
            pa.Table.from_pandas(self.market_table, preserve_index=False), folder / files["market"]
        )
        atomic_write_parquet(
            pa.Table.from_pandas(self.cohort_table, preserve_index=False), folder / files["cohort"]
        )
        meta = {
            "format_version": FORMAT_VERSION,
            "now": self.now.isoformat(),
            "window_days": self.window_days,
            "half_life_days": self.half_life_days,
            "min_plays": self.min_plays,
            "stats": self.stats,
            "files": files,
        }
        path = folder / META_FILE
        atomic_write_text(path, json.dumps(meta, indent=2, sort_keys=True))
        current = set(files.values())
        for stale in folder.glob("*.parquet"):
            if stale.name not in current and stale.name.split("-")[0] in files:
                stale.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, folder: Path) -> PopularityTables:
        """Read tables written by `save`."""
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise PopularityError(f"no popularity tables at {path}; fit and save them first")
        meta = json.loads(path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise PopularityError(
                f"{path} has format {meta.get('format_version')}, expected {FORMAT_VERSION}; "
                "refit the popularity tables"
            )
        files = {k: Path(folder) / v for k, v in meta["files"].items()}
        catalogue = pq.read_table(files["catalogue"]).to_pandas()
        n_items = len(catalogue)
        item_index = pd.Index(catalogue[C.ITEM_ID])
        glob = pq.read_table(files["global"]).to_pandas()
        global_counts = np.zeros(n_items)
        global_counts[item_index.get_indexer(pd.Index(glob[C.ITEM_ID]))] = glob[SCORE].to_numpy()
        market = pq.read_table(files["market"]).to_pandas()
        market_counts = sp.csr_matrix(
            (
                market[SCORE].to_numpy(),
                (
                    np.array([country_code(c) for c in market[C.COUNTRY]], dtype=np.int64),
                    item_index.get_indexer(pd.Index(market[C.ITEM_ID])),
                ),
            ),
            shape=(len(D.COUNTRIES), n_items),
        )
        cohort = pq.read_table(files["cohort"]).to_pandas()
        keys = [C.COUNTRY, C.AGE_BUCKET, C.TIER]
        codes, uniques = pd.MultiIndex.from_frame(cohort[keys]).factorize(sort=True)
        cohort_keys = pd.DataFrame(list(uniques), columns=keys, dtype=object)
        cohort_counts = sp.csr_matrix(
            (
                cohort[SCORE].to_numpy(),
                (codes, item_index.get_indexer(pd.Index(cohort[C.ITEM_ID]))),
            ),
            shape=(len(cohort_keys), n_items),
        )
        return cls(
            now=datetime.fromisoformat(meta["now"]),
            window_days=int(meta["window_days"]),
            half_life_days=float(meta["half_life_days"]),
            min_plays=float(meta["min_plays"]),
            catalogue=catalogue,
            global_counts=global_counts,
            market_counts=market_counts,
            cohort_keys=cohort_keys,
            cohort_counts=cohort_counts,
            stats={k: int(v) for k, v in meta.get("stats", {}).items()},
        )


def _shrink(counts: np.ndarray, total: float, prior: np.ndarray, strength: float) -> np.ndarray:
    """(counts + prior) / (total + strength), where `prior` sums to `strength` (or to 0)."""
    denom = total + strength
    if denom <= 0:
        return np.zeros_like(counts, dtype=np.float64)
    return np.asarray((counts + prior) / denom, dtype=np.float64)
