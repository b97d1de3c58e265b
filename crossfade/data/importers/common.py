"""What every importer shares: the error type, the defaults for absent fields, and mappings.

A format module turns its files into a `Source`: side tables (listeners, catalogue) that are
small enough to hold in memory, plus a stream of normalized interaction chunks. The staging
writer then maps a `Source` onto the contracts the same way for every format, so the rules
for absent fields (documented in docs/importers.md) live here, once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crossfade.data import domains as D


class ImportFormatError(ValueError):
    """A dataset cannot be imported; the message names the file, the problem and the fix."""


# --- defaults for fields real datasets do not have ---------------------------------------

DEFAULT_TIER = "premium"
DEFAULT_DURATION_MS = 210_000  # 3.5 minutes, a typical track length
SKIPPED_MS_PLAYED = 20_000  # a low rating reads as a skip after 20 s (under the 30 s stream mark)
LOW_RATING_MAX = 2.0  # rating <= this: skipped
SAVE_RATING_MIN = 5.0  # rating >= this: saved
LOW_WEIGHT_MAX = 0.0  # weight <= this: skipped (negative or zero feedback)
SAVE_WEIGHT_MIN = 5.0  # weight >= this: saved (e.g. five or more plays)
REASON_START = "clickrow"
REASON_END_DONE = "trackdone"
REASON_END_SKIPPED = "fwdbtn"
UNKNOWN_ARTIST_NAME = "unknown artist"
UNKNOWN_TITLE = "unknown title"
ALL_MARKETS = ",".join(D.MARKETS)

# Columns of a normalized interaction chunk (a pandas DataFrame).
ROW = "row"  # 0-based data row in the source file (where a row is named in errors)
USER = "user"  # raw source user id (string)
ITEM = "item"  # raw source item id (string)
TS_US = "ts_us"  # int64 microseconds since the epoch, UTC
RATING = "rating"  # optional float: explicit rating
# Optional: the source's own event id (e.g. an `event_id` column); part of the content id.
SOURCE_EVENT_ID = "source_event_id"
# staged ids are the source prefix + one of these + the raw id (events: the content hash)
EVENT_KEY = "-e"
USER_KEY = "-u"
ITEM_KEY = "-i"
WEIGHT = "weight"  # optional float: implicit strength (play count, confidence)
# Optional per-row catalogue facts, for formats whose catalogue lives in the event stream.
TITLE = "title"
ARTIST_KEY = "artist_key"
ARTIST_NAME = "artist_name"
STREAM_ITEM_FIELDS = (TITLE, ARTIST_KEY, ARTIST_NAME)

# Columns of the side tables (indexed by the raw source id); every one is optional.
USER_FIELDS = ("country", "age_bucket", "signup_date")
# Listener facts with no contract column: kept on the Source for offline evaluation
# (crossfade.data.importers.extras), never staged.
EXTRA_USER_FIELDS = ("gender", "occupation")
ITEM_FIELDS = ("title", "genre", "tags", "release_date", "artist_key", "artist_name")


@dataclass
class Source:
    """A dataset opened by a format module, ready to be mapped onto the contracts.

    `users` and `items` are indexed by the raw source id and hold only what the source knows
    (columns from USER_FIELDS / ITEM_FIELDS; missing values are NA). `chunks` yields
    normalized interaction frames (ROW, USER, ITEM, TS_US, optional RATING or WEIGHT and
    STREAM_ITEM_FIELDS) of at most `chunk_rows` rows, so big files never sit in memory whole.
    """

    prefix: str
    files: list[Path]
    chunks: Iterator[pd.DataFrame]
    users: pd.DataFrame = field(default_factory=pd.DataFrame)
    items: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


# --- ids ----------------------------------------------------------------------------------


def slug(text: str) -> str:
    """Keep lowercase letters and digits: a name fit to prefix ids ("ml-100k" -> "ml100k")."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def stable_key(*parts: str) -> str:
    """A short deterministic key for a record that has no id of its own (hash of its names)."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8"), usedforsecurity=False)
    return "h" + digest.hexdigest()[:16]


EVENT_HASH_BYTES = 16  # 128 bits: no collision in any log this side of 10^18 events
SKIP, SAVE, PLAY = "skip", "save", "play"


def outcomes(chunk: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Which interactions of a normalized chunk read as skips and which as saves."""
    n = len(chunk)
    if RATING in chunk.columns:
        rating = chunk[RATING].to_numpy(dtype=np.float64)
        low, high = rating <= LOW_RATING_MAX, rating >= SAVE_RATING_MIN
    elif WEIGHT in chunk.columns:
        weight = chunk[WEIGHT].to_numpy(dtype=np.float64)
        low, high = weight <= LOW_WEIGHT_MAX, weight >= SAVE_WEIGHT_MIN
    else:
        low, high = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    return low, high & ~low


def event_hashes(chunk: pd.DataFrame) -> list[str]:
    """The content identity of each interaction of a normalized chunk (hex BLAKE2b).

    Built from the raw listener, item, UTC microsecond, event type (play / skip / save) and
    the source's own event id where it has one, never from the row's position: the same
    interaction gets the same id in any file, split or order, so a re-sent or overlapping
    export is recognised and published once.
    """
    low, save = outcomes(chunk)
    n = len(chunk)
    kinds = pa.array(np.where(low, SKIP, np.where(save, SAVE, PLAY)), pa.string())
    if SOURCE_EVENT_ID in chunk.columns:
        source = pa.array(chunk[SOURCE_EVENT_ID].astype(str), pa.string())
    else:
        source = pa.repeat(pa.scalar("", pa.string()), n)
    users = pa.array(chunk[USER].astype(str), pa.string())
    items = pa.array(chunk[ITEM].astype(str), pa.string())
    times = pc.cast(pa.array(chunk[TS_US].to_numpy(dtype=np.int64), pa.int64()), pa.string())
    joined = pc.binary_join_element_wise(users, items, times, kinds, source, "\x1f")
    blake = hashlib.blake2b
    return [
        blake(text, digest_size=EVENT_HASH_BYTES).hexdigest()
        for text in pc.cast(joined, pa.binary()).to_pylist()
    ]


# --- listener fields ----------------------------------------------------------------------

_COUNTRY_NAMES = {
    "united states": "US",
    "united states of america": "US",
    "united kingdom": "GB",
    "germany": "DE",
    "france": "FR",
    "sweden": "SE",
    "brazil": "BR",
    "mexico": "MX",
    "spain": "ES",
    "japan": "JP",
    "india": "IN",
    "nigeria": "NG",
    "indonesia": "ID",
}


def country_code(value: object) -> str:
    """Map a country name (or market code) to a market of the domain, else "ZZ" (unknown/other)."""
    if not isinstance(value, str):
        return D.UNKNOWN_COUNTRY
    text = value.strip()
    if text.upper() in D.MARKETS:
        return text.upper()
    return _COUNTRY_NAMES.get(text.lower(), D.UNKNOWN_COUNTRY)


def age_bucket(value: object) -> str:
    """Map an age in years to the contract's bucket; unknown or implausible ages give "unknown".

    Listeners under 18 (including under 13, which the domain has no bucket for) become
    "13-17" so they are treated as minors; "unknown" is treated as a minor too.
    """
    try:
        age = int(float(str(value).strip()))
    except (TypeError, ValueError):
        return D.UNKNOWN
    if age <= 0 or age > 120:
        return D.UNKNOWN
    for upper, bucket in (
        (18, "13-17"),
        (25, "18-24"),
        (35, "25-34"),
        (45, "35-44"),
        (55, "45-54"),
    ):
        if age < upper:
            return bucket
    return "55+"


# --- catalogue fields ---------------------------------------------------------------------

# Movie genres have no music counterpart, except the two that name a kind of music.
MOVIE_GENRE_TO_GENRE = {"musical": "pop", "western": "country"}


def genre_tag(name: str) -> str:
    """A movie genre as a tag: lowercase, words joined by "_" ("Sci-Fi" -> "sci_fi")."""
    text = name.strip().lower().replace("'", "")
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def movie_genre(genres: list[str]) -> tuple[str, str | None]:
    """The contract genre and the tags of a movie's genre list.

    The genre is the first listed genre with a music counterpart, else "unknown"; every
    genre is kept as a tag so content features still see it.
    """
    tags = [genre_tag(g) for g in genres if g.strip() and not g.strip().startswith("(")]
    tags = [t for t in tags if t and t != D.UNKNOWN]
    genre = next((MOVIE_GENRE_TO_GENRE[t] for t in tags if t in MOVIE_GENRE_TO_GENRE), D.UNKNOWN)
    return genre, (" ".join(dict.fromkeys(tags)) or None)


_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def year_date(value: object) -> date | None:
    """January 1st of a year given as a number or at the end of a title ("Heat (1995)")."""
    text = str(value).strip() if value is not None else ""
    match = _YEAR_IN_TITLE.search(text)
    year_text = match.group(1) if match else text
    if not year_text.isdigit() or len(year_text) != 4:
        return None
    year = int(year_text)
    return date(year, 1, 1) if 1800 <= year <= 2100 else None
