"""Last.fm-1K (Celma, 2010): ~19M scrobbles of ~1,000 listeners, with listener profiles.

`userid-timestamp-artid-artname-traid-traname.tsv`: tab-separated, no header, fields user
id, ISO-8601 time, MusicBrainz artist id (may be empty), artist name, MusicBrainz track id
(may be empty), track name. `userid-profile.tsv` beside it (header `#id gender age country
registered`) gives age, country and sign-up date. Each scrobble is a complete play.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd

from crossfade.data.importers import common as K
from crossfade.data.importers import readers as R
from crossfade.data.importers.common import ImportFormatError, Source

NAME = "lastfm1k"
PLAYS_FILE = "userid-timestamp-artid-artname-traid-traname.tsv"
PROFILE_FILE = "userid-profile.tsv"
FIELDS = ["user", "ts", "artist_mbid", "artist_name", "track_mbid", "track_name"]
WHAT = "Last.fm-1K listening log"


def _plays_file(path: Path) -> Path:
    if path.is_dir():
        plays = path / PLAYS_FILE
        if not plays.is_file():
            raise ImportFormatError(f"{path}: no {PLAYS_FILE} in this folder; pass the folder of "
                                    "the Last.fm-1K download or the .tsv file itself")  # fmt: skip
        return plays
    return path


def _registered(text: str) -> object:
    try:
        return datetime.strptime(text.strip(), "%b %d, %Y").date()
    except ValueError:
        return None


def read_profiles(path: Path) -> pd.DataFrame:
    """Listener age bucket, market and sign-up date from `userid-profile.tsv`."""
    text = R.read_text(path, "Last.fm-1K profile file")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 4:
            raise ImportFormatError(
                f"{path}: line {number} has {len(fields)} field(s); a profile line is "
                "'id<TAB>gender<TAB>age<TAB>country<TAB>registered': fix it or remove the file"
            )
        registered = _registered(fields[4]) if len(fields) > 4 else None
        records.append(
            (fields[0].strip(), K.country_code(fields[3]), K.age_bucket(fields[2]), registered)
        )
    frame = pd.DataFrame.from_records(
        records, columns=["id", "country", "age_bucket", "signup_date"]
    ).set_index("id")
    return frame[~frame.index.duplicated()]


def _keys(ids: pd.Series, *names: pd.Series) -> pd.Series:
    """MusicBrainz ids where present, else a stable hash of the names (computed once per name)."""
    empty = ids == ""
    if not empty.any():
        return ids
    combos = pd.DataFrame({f"n{i}": n[empty] for i, n in enumerate(names)})
    unique = combos.drop_duplicates()
    hashed = [K.stable_key(*row) for row in unique.itertuples(index=False, name=None)]
    lookup = unique.assign(key=hashed)
    keys = combos.merge(lookup, how="left", on=list(combos.columns))["key"].to_numpy()
    out = ids.copy()
    out[empty.to_numpy()] = keys
    return out


def open_source(path: Path, *, chunk_rows: int, id_prefix: str | None = None) -> Source:
    """Open the Last.fm-1K listening log (file or folder) with its profile file if present."""
    plays = _plays_file(path)
    R.check_file(plays, WHAT)
    R.check_text(plays, WHAT)
    with plays.open("rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    if first.count("\t") != len(FIELDS) - 1:
        raise ImportFormatError(
            f"{plays}: first line has {first.count(chr(9)) + 1} tab-separated field(s), "
            f"expected {len(FIELDS)} ({', '.join(FIELDS)}); is this the Last.fm-1K "
            f"{PLAYS_FILE}?"
        )
    profile = plays.parent / PROFILE_FILE
    users = read_profiles(profile) if profile.is_file() else pd.DataFrame()
    invalid = R.InvalidRows()
    details: dict[str, object] = {}

    def chunks() -> Iterator[pd.DataFrame]:
        tables = R.iter_tables(
            plays, WHAT, column_names=FIELDS, delimiter="\t", skip_rows=0,
            chunk_rows=chunk_rows, quoted=False, invalid=invalid,
        )  # fmt: skip
        for offset, table in tables:
            rows = R.Rows(plays, offset, header_lines=0)
            frame = pd.DataFrame(
                {
                    K.ROW: range(offset, offset + table.num_rows),
                    K.USER: R.id_column(table["user"], "user id", rows),
                    K.TS_US: R.timestamp_column(table["ts"], "timestamp", rows),
                }
            )
            track_mbid = R.text_column(table["track_mbid"])
            artist = R.text_column(table["artist_name"])
            track = R.text_column(table["track_name"])
            artist_mbid = R.text_column(table["artist_mbid"])
            frame[K.ITEM] = _keys(track_mbid, artist, track).to_numpy()
            frame[K.ARTIST_KEY] = _keys(artist_mbid, artist).to_numpy()
            frame[K.TITLE] = track.where(track != "", K.UNKNOWN_TITLE).to_numpy()
            frame[K.ARTIST_NAME] = artist.where(artist != "", K.UNKNOWN_ARTIST_NAME).to_numpy()
            yield frame
        details["malformed_rows_skipped"] = invalid.count
        if invalid.example is not None:
            details["malformed_row_example"] = invalid.example
        details["profile_listeners"] = len(users)

    notes = [
        "each scrobble is a complete play (ms_played = default duration, never skipped/saved)",
        "items keyed by MusicBrainz track id, else a hash of artist name + track name",
        "artists keyed by MusicBrainz artist id, else a hash of the artist name",
        "listener age, country (names mapped to markets, others ZZ) and sign-up from the profile",
        "malformed log rows are skipped and counted (malformed_rows_skipped)",
    ]
    return Source(
        prefix=id_prefix or NAME,
        files=[plays, *([profile] if profile.is_file() else [])],
        chunks=chunks(),
        users=users,
        notes=notes,
        details=details,
    )
