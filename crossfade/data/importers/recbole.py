"""RecBole atomic files: `<name>.inter` with optional `<name>.item` and `<name>.user`.

Tab-separated, one header line of `field:type` (type: token, token_seq, float, float_seq).
The `.inter` file needs user_id, item_id and timestamp fields; `rating` (or `weight`) is
optional. This is how the MovieLens-100K copy inside the recbole wheel is read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from crossfade.data.importers import common as K
from crossfade.data.importers import readers as R
from crossfade.data.importers.common import ImportFormatError, Source

NAME = "recbole"
TYPES = ("token", "token_seq", "float", "float_seq")
REQUIRED = ("user_id", "item_id", "timestamp")
TITLE_FIELDS = ("movie_title", "title", "track_name", "name")
GENRE_FIELDS = ("class", "genre", "genres")
YEAR_FIELDS = ("release_year", "year")


def _inter_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if len(found) != 1:
            listed = ", ".join(p.name for p in found) or "none"
            raise ImportFormatError(
                f"{path}: a RecBole folder must hold exactly one .inter file (found {listed}); "
                "pass the .inter file itself"
            )
        return found[0]
    if path.suffix != ".inter":
        raise ImportFormatError(
            f"{path}: a RecBole dataset is a '<name>.inter' file (or its folder); got {path.name!r}"
        )
    return path


def parse_header(path: Path, what: str) -> list[str]:
    """Field names of a RecBole header ("user_id:token" -> "user_id"); fails on a bad header."""
    names = []
    for field in R.read_header(path, what, "\t"):
        name, _, typ = field.partition(":")
        if not name or typ not in TYPES:
            raise ImportFormatError(
                f"{path}: header field {field!r} is not 'name:type' with type one of "
                f"{', '.join(TYPES)}; is this a RecBole atomic file?"
            )
        names.append(name)
    if len(set(names)) != len(names):
        raise ImportFormatError(f"{path}: duplicate header fields {names}; rename them")
    return names


def _side_frame(path: Path, what: str) -> pd.DataFrame:
    """Read a small .item/.user file whole, all fields as text."""
    R.check_file(path, what)
    names = parse_header(path, what)
    text = R.read_text(path, what)
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep="\t", header=None, skiprows=1, names=names,
            dtype=str, keep_default_na=False, quoting=3,
        )  # fmt: skip
    except (pd.errors.ParserError, ValueError) as exc:
        raise ImportFormatError(f"{path}: malformed {what} ({exc}); fix or remove it") from None
    return frame


def _items(path: Path) -> pd.DataFrame:
    frame = _side_frame(path, "RecBole item file")
    if "item_id" not in frame.columns:
        raise ImportFormatError(f"{path}: no item_id field; found {', '.join(frame.columns)}")
    out = pd.DataFrame(index=pd.Index(frame["item_id"].str.strip(), name="id"))
    title = next((f for f in TITLE_FIELDS if f in frame.columns), None)
    if title:
        out["title"] = frame[title].str.strip().replace("", None).to_numpy()
    genres = next((f for f in GENRE_FIELDS if f in frame.columns), None)
    if genres:
        pairs = [K.movie_genre(g.split()) for g in frame[genres]]
        out["genre"] = [p[0] for p in pairs]
        out["tags"] = [p[1] for p in pairs]
    year = next((f for f in YEAR_FIELDS if f in frame.columns), None)
    if year:
        out["release_date"] = [K.year_date(v) for v in frame[year]]
    return out[~out.index.duplicated()]


def _users(path: Path) -> pd.DataFrame:
    frame = _side_frame(path, "RecBole user file")
    if "user_id" not in frame.columns:
        raise ImportFormatError(f"{path}: no user_id field; found {', '.join(frame.columns)}")
    out = pd.DataFrame(index=pd.Index(frame["user_id"].str.strip(), name="id"))
    if "age" in frame.columns:
        out["age_bucket"] = [K.age_bucket(a) for a in frame["age"]]
    if "country" in frame.columns:
        out["country"] = [K.country_code(c) for c in frame["country"]]
    for name in K.EXTRA_USER_FIELDS:  # for offline evaluation only: no contract column
        if name in frame.columns:
            out[name] = frame[name].str.strip().replace("", None).to_numpy()
    return out[~out.index.duplicated()]


def open_source(path: Path, *, chunk_rows: int, id_prefix: str | None = None) -> Source:
    """Open a RecBole dataset (.inter file or its folder) with its .item/.user files."""
    inter = _inter_file(path)
    what = "RecBole .inter file"
    R.check_file(inter, what)
    R.check_text(inter, what)
    names = parse_header(inter, what)
    missing = [f for f in REQUIRED if f not in names]
    if missing:
        raise ImportFormatError(
            f"{inter}: missing required field(s) {', '.join(missing)}; found {', '.join(names)}. "
            f"The {NAME} format needs {', '.join(REQUIRED)} (rating or weight optional)"
        )
    value = next((f for f in ("rating", "weight") if f in names), None)
    stem = inter.stem
    item_file, user_file = inter.with_suffix(".item"), inter.with_suffix(".user")
    items = _items(item_file) if item_file.is_file() else pd.DataFrame()
    users = _users(user_file) if user_file.is_file() else pd.DataFrame()
    side = [f for f in (item_file, user_file) if f.is_file()]

    def chunks() -> Iterator[pd.DataFrame]:
        tables = R.iter_tables(
            inter, what, column_names=names, delimiter="\t", skip_rows=1,
            chunk_rows=chunk_rows, quoted=False,
        )  # fmt: skip
        for offset, table in tables:
            rows = R.Rows(inter, offset, header_lines=1)
            yield R.interaction_frame(
                table, rows, user="user_id", item="item_id", ts="timestamp",
                value=value, value_kind=value or K.RATING,
            )  # fmt: skip

    notes = [
        f"RecBole dataset {stem!r}: interactions from {inter.name}"
        + (f", {value} decides skips and saves" if value else ""),
        "item titles, genres (class/genre field) and release years from the .item file",
        "genres Musical->pop and Western->country, others 'unknown'; all kept as tags",
        "ages (and countries, if present) from the .user file; genders and occupations are"
        " kept beside the batch for offline evaluation only (no contract column)",
        "one placeholder artist ('unknown artist') per item",
    ]
    return Source(
        prefix=id_prefix or NAME,  # the format, never the file name: re-sends dedupe
        files=[inter, *side],
        chunks=chunks(),
        users=users,
        items=items,
        notes=notes,
    )
