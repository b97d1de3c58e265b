"""MovieLens ratings (GroupLens): ml-100k `u.data`, ml-1m `ratings.dat`, ml-latest `ratings.csv`.

Ratings are the interactions; the item file beside them (u.item, movies.dat, movies.csv)
gives titles, release years and genres, the user file (u.user, users.dat) ages. GroupLens
ships the 100k and 1m side files in ISO-8859-1, so those (and only those) may be Latin-1.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from crossfade.data.importers import common as K
from crossfade.data.importers import readers as R
from crossfade.data.importers.common import ImportFormatError, Source

NAME = "movielens"
# u.item's 19 genre flags, in file order.
U_ITEM_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """One MovieLens release: its ratings file and how to read it."""

    variant: str  # default id prefix
    ratings: str
    items: str
    users: str | None
    delimiter: str
    columns: tuple[str, ...]  # names given to the raw fields (":"-split for "::" files)
    header: bool


LAYOUTS = (
    Layout("ml100k", "u.data", "u.item", "u.user", "\t", ("user", "item", "rating", "ts"), False),
    Layout(
        "ml1m",
        "ratings.dat",
        "movies.dat",
        "users.dat",
        ":",
        ("user", "_1", "item", "_2", "rating", "_3", "ts"),
        False,
    ),
    Layout(
        "mllatest", "ratings.csv", "movies.csv", None, ",", ("user", "item", "rating", "ts"), True
    ),
)
CSV_HEADER = ["userid", "movieid", "rating", "timestamp"]


def _layout_of(path: Path) -> tuple[Layout, Path]:
    """Which release a path holds, and its ratings file."""
    if path.is_dir():
        for layout in LAYOUTS:
            if (path / layout.ratings).is_file():
                return layout, path / layout.ratings
        raise ImportFormatError(
            f"{path}: no MovieLens ratings file in this folder; expected one of "
            f"{', '.join(layout.ratings for layout in LAYOUTS)}"
        )
    R.check_file(path, "MovieLens ratings file")
    for layout in LAYOUTS:
        if path.name == layout.ratings:
            return layout, path
    by_suffix = {".data": LAYOUTS[0], ".base": LAYOUTS[0], ".test": LAYOUTS[0]}
    by_suffix |= {".dat": LAYOUTS[1], ".csv": LAYOUTS[2]}
    if path.suffix.lower() in by_suffix:
        return by_suffix[path.suffix.lower()], path
    raise ImportFormatError(
        f"{path}: cannot tell which MovieLens release this is; name the file u.data (ml-100k), "
        "ratings.dat (ml-1m) or ratings.csv (ml-latest), or pass its folder"
    )


def _bad_side_file(path: Path, line: int, expected: str) -> ImportFormatError:
    return ImportFormatError(
        f"{path}: line {line} is not {expected}; fix the line or remove the file to import "
        "ratings without it"
    )


def _u_item(path: Path) -> pd.DataFrame:
    records = []
    text = R.read_text(path, "MovieLens item file", legacy_latin1=True)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 5 + len(U_ITEM_GENRES):
            raise _bad_side_file(path, number, "'id|title|release date|video date|url|19 flags'")
        flags = fields[5 : 5 + len(U_ITEM_GENRES)]
        genres = [g for g, flag in zip(U_ITEM_GENRES, flags, strict=True) if flag.strip() == "1"]
        genre, tags = K.movie_genre(genres)
        try:
            released = datetime.strptime(fields[2].strip(), "%d-%b-%Y").date()
        except ValueError:
            released = None
        title = fields[1].strip()
        records.append(
            (fields[0].strip(), title if title != "unknown" else None, genre, tags, released)
        )
    return pd.DataFrame.from_records(
        records, columns=["id", "title", "genre", "tags", "release_date"]
    ).set_index("id")


def _movies_dat(path: Path) -> pd.DataFrame:
    records = []
    text = R.read_text(path, "MovieLens item file", legacy_latin1=True)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3:
            raise _bad_side_file(path, number, "'MovieID::Title::Genres'")
        genre, tags = K.movie_genre(fields[2].split("|"))
        records.append((fields[0].strip(), fields[1].strip(), genre, tags, K.year_date(fields[1])))
    return pd.DataFrame.from_records(
        records, columns=["id", "title", "genre", "tags", "release_date"]
    ).set_index("id")


def _movies_csv(path: Path) -> pd.DataFrame:
    text = R.read_text(path, "MovieLens movies.csv")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise ImportFormatError(f"{path}: not a readable CSV ({exc}); fix or remove it") from None
    missing = [c for c in ("movieId", "title", "genres") if c not in frame.columns]
    if missing:
        raise ImportFormatError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}. "
            "movies.csv needs movieId,title,genres"
        )
    pairs = [K.movie_genre(g.split("|")) for g in frame["genres"]]
    return pd.DataFrame(
        {
            "title": frame["title"].str.strip().to_numpy(),
            "genre": [p[0] for p in pairs],
            "tags": [p[1] for p in pairs],
            "release_date": [K.year_date(t) for t in frame["title"]],
        },
        index=pd.Index(frame["movieId"].str.strip(), name="id"),
    )


def _users(
    path: Path, separator: str, fields_at: tuple[int, int, int], expected: str
) -> pd.DataFrame:
    """Age bucket, gender and occupation (positions `fields_at`) of every listed user; gender
    and occupation are for offline evaluation only (no contract column)."""
    age, gender, occupation = fields_at
    records = []
    text = R.read_text(path, "MovieLens user file", legacy_latin1=True)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(separator)
        if len(fields) < 5:
            raise _bad_side_file(path, number, expected)
        records.append(
            (
                fields[0].strip(),
                K.age_bucket(fields[age]),
                fields[gender].strip() or None,
                fields[occupation].strip() or None,
            )
        )
    columns = ["id", "age_bucket", *K.EXTRA_USER_FIELDS]
    return pd.DataFrame.from_records(records, columns=columns).set_index("id")


def _side_tables(layout: Layout, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    used: list[Path] = []
    items = pd.DataFrame()
    users = pd.DataFrame()
    item_file = folder / layout.items
    if item_file.is_file():
        reader = {"u.item": _u_item, "movies.dat": _movies_dat, "movies.csv": _movies_csv}
        items = reader[layout.items](item_file)
        used.append(item_file)
    if layout.users and (folder / layout.users).is_file():
        user_file = folder / layout.users
        if layout.users == "u.user":
            users = _users(user_file, "|", (1, 2, 3), "'id|age|gender|occupation|zip'")
        else:
            users = _users(
                user_file, "::", (2, 1, 3), "'UserID::Gender::Age::Occupation::Zip-code'"
            )
        used.append(user_file)
    return items[~items.index.duplicated()], users[~users.index.duplicated()], used


def open_source(path: Path, *, chunk_rows: int, id_prefix: str | None = None) -> Source:
    """Open a MovieLens release (folder or ratings file) with its item and user files."""
    layout, ratings = _layout_of(path)
    R.check_file(ratings, "MovieLens ratings file")
    R.check_text(ratings, "MovieLens ratings file")
    what = f"MovieLens {layout.ratings}"
    if layout.header:
        found = [h.lower() for h in R.read_header(ratings, what, ",")]
        if found[:4] != CSV_HEADER:
            raise ImportFormatError(
                f"{ratings}: header is {','.join(found)}; a MovieLens ratings.csv starts with "
                "userId,movieId,rating,timestamp"
            )
    else:
        with ratings.open("rb") as handle:
            first = handle.readline().decode("utf-8", errors="replace")
        if not first.split(layout.delimiter)[0].strip().isdigit():
            raise ImportFormatError(
                f"{ratings}: first line {first.strip()[:80]!r} is not a rating; a MovieLens "
                f"{layout.ratings} has no header and numeric ids"
            )
    items, users, side = _side_tables(layout, ratings.parent)
    columns = list(layout.columns)

    def chunks() -> Iterator[pd.DataFrame]:
        tables = R.iter_tables(
            ratings, what, column_names=columns, delimiter=layout.delimiter,
            skip_rows=1 if layout.header else 0, chunk_rows=chunk_rows, quoted=layout.header,
        )  # fmt: skip
        for offset, table in tables:
            rows = R.Rows(ratings, offset, header_lines=1 if layout.header else 0)
            yield R.interaction_frame(
                table, rows, user="user", item="item", ts="ts", value="rating"
            )

    notes = [
        f"MovieLens {layout.variant} ratings from {ratings.name}; items are movies",
        "titles, release years and genres from the item file when present",
        "movie genres Musical->pop and Western->country, others 'unknown'; all kept as tags",
        "ages from the user file when present; countries are unknown (ZZ); genders and"
        " occupations are kept beside the batch for offline evaluation only",
        "one placeholder artist ('unknown artist') per movie",
        "rating <= 2 is a skip, rating >= 5 a save",
    ]
    return Source(
        prefix=id_prefix or layout.variant,  # the release's layout, never the folder name
        files=[ratings, *side],
        chunks=chunks(),
        users=users,
        items=items,
        notes=notes,
    )
