"""Per-item facts the request path needs, as NumPy arrays prepared once per model load.

The candidate model's popularity tables already hold the catalogue (artist, content type,
release day, explicit flag, markets); this turns them into arrays indexed by a dict, so a
request never builds a pandas index or frame to look items up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.candidates.model import CandidateModel
from crossfade.candidates.popularity import country_code
from crossfade.data import domains as D
from crossfade.evaluation.metrics import play_share_above
from crossfade.reranking.safety import available_in

_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class ServingCatalog:
    """Item arrays in one row order; `rows` maps item ids to it (-1: unknown item)."""

    item_ids: np.ndarray  # object
    index: dict[str, int]
    artist_ids: np.ndarray  # object
    artist_names: dict[str, str]
    release_day: np.ndarray  # int64 days since the epoch
    is_episode: np.ndarray  # bool
    explicit: np.ndarray  # bool (missing counts as explicit)
    markets: np.ndarray  # object: comma-separated available markets
    available: np.ndarray  # bool (items, len(COUNTRIES))
    popularity_share: np.ndarray  # float64 share of decayed streams
    play_share_above: np.ndarray  # share of plays taken by items played more (long tail)
    shown_in: np.ndarray  # bool (items, len(COUNTRIES)): the safety rule's market check
    artist_codes: np.ndarray  # int64: one code per distinct artist id (MMR's "same artist")

    @classmethod
    def from_model(
        cls, model: CandidateModel, artist_names: Mapping[str, str] | None = None
    ) -> ServingCatalog:
        """Arrays from the model's popularity tables (names only label the reasons)."""
        tables = model.popularity
        cat = tables.catalogue
        ids = cat[C.ITEM_ID].astype(str).to_numpy(dtype=object)
        share = np.asarray(tables.global_share(), dtype=np.float64)
        above = play_share_above(pd.Series(np.asarray(tables.global_counts), index=ids))
        markets = cat[C.AVAILABLE_MARKETS].fillna("").astype(str).to_numpy(dtype=object)
        artists = cat[C.ARTIST_ID].astype(str).to_numpy(dtype=object)
        # The re-ranker's and the response's safety check read the markets string through
        # `available_in`; evaluating it once per item and country keeps the answer identical.
        shown = np.array(
            [[available_in(m, country) for country in D.COUNTRIES] for m in markets], dtype=bool
        ).reshape(len(markets), len(D.COUNTRIES))
        codes, _ = pd.factorize(artists)
        return cls(
            item_ids=ids,
            index={str(i): n for n, i in enumerate(ids)},
            artist_ids=artists,
            artist_names=dict(artist_names or {}),
            release_day=np.asarray(tables.release_day, dtype=np.int64),
            is_episode=np.asarray(tables.is_episode, dtype=bool),
            explicit=np.asarray(tables.explicit_flags, dtype=bool),
            markets=markets,
            available=np.asarray(tables.available, dtype=bool),
            popularity_share=share,
            play_share_above=above.to_numpy(dtype=np.float64),
            shown_in=shown,
            artist_codes=np.asarray(codes, dtype=np.int64),
        )

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each item (-1 for an item this catalogue does not know)."""
        get = self.index.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))

    def safe_mask(self, rows: np.ndarray, country: str, minor: bool) -> np.ndarray:
        """Items that may be shown: known, available in the market, not explicit for minors."""
        known = rows >= 0
        safe = np.where(known, rows, 0)
        ok = known & self.available[safe, country_code(country)]
        if minor:
            ok &= ~self.explicit[safe]
        return ok

    def shown_mask(self, rows: np.ndarray, country: str, minor: bool) -> np.ndarray:
        """What `reranking.safety.safety_filter` keeps (default switches), as a mask: known,
        available in `country` by its markets string, and not explicit for a minor."""
        known = rows >= 0
        safe = np.where(known, rows, 0)
        ok = known & self.shown_in[safe, country_column(country)]
        if minor:
            ok &= ~self.explicit[safe]
        return ok

    def artist_label(self, artist_id: str) -> str:
        """The artist's display name when known, else its id."""
        return self.artist_names.get(artist_id, artist_id)

    def days_since_release(self, rows: np.ndarray, today: int) -> np.ndarray:
        """Days since release per row (365 for unknown items, as in training)."""
        out = np.full(len(rows), 365.0)
        known = rows >= 0
        out[known] = today - self.release_day[rows[known]]
        return out


def epoch_day(moment: datetime) -> int:
    """UTC calendar day of an aware datetime as days since the epoch."""
    return (moment.astimezone(UTC).date() - _EPOCH).days


_COUNTRY_COLUMN = {c: i for i, c in enumerate(D.COUNTRIES)}


def country_column(country: str) -> int:
    """Column of `shown_in` for a country; an unknown one counts as "ZZ" (as `available_in`)."""
    return _COUNTRY_COLUMN.get(country, _COUNTRY_COLUMN[D.UNKNOWN_COUNTRY])


def market_of(country: str) -> str:
    """A request's market: a known market code, else "ZZ" (only items available everywhere)."""
    return country if country in D.MARKETS else D.UNKNOWN_COUNTRY
