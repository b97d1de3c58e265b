"""Real-data import: formats map onto the contracts, absent fields get documented defaults,
and bad input fails with an ImportFormatError that leaves nothing staged."""

from __future__ import annotations

import importlib.resources
import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.contracts import CONTRACTS, conform
from crossfade.data.importers import (
    DEFAULT_DURATION_MS,
    FORMATS,
    ImportFormatError,
    import_path,
    open_path,
)
from crossfade.data.importers import common as K
from crossfade.data.importers.common import stable_key
from tests.fixtures import importer_samples as S

TABLES = ("users", "artists", "items", "events")
ML100K = Path(str(importlib.resources.files("recbole") / "dataset_example" / "ml-100k"))


def read(batch: Path, name: str) -> pd.DataFrame:
    """A staged table as a frame."""
    return lake.read_batch_table(batch, name).to_pandas()


def row_ids(fmt: str, path: Path, id_prefix: str | None = None) -> dict[int, str]:
    """The staged event id of each data row (content ids, computed the way staging does)."""
    source = open_path(fmt, path, id_prefix=id_prefix)
    out: dict[int, str] = {}
    for chunk in source.chunks:
        for row, digest in zip(chunk[K.ROW], K.event_hashes(chunk), strict=True):
            out[int(row)] = f"{source.prefix}{K.EVENT_KEY}{digest}"
    return out


def assert_contracts(batch: Path) -> dict[str, pa.Table]:
    """Every table conforms exactly to its contract, values sit in their domains, refs resolve."""
    tables = {name: lake.read_batch_table(batch, name) for name in TABLES}
    for name, table in tables.items():
        spec = CONTRACTS[name]
        got = [(f.name, f.type, f.nullable) for f in table.schema]
        assert got == [(f.name, f.type, f.nullable) for f in spec.schema], name
        conform(table, name)
        for column in spec.required:
            assert table[column].null_count == 0, (name, column)
        for column, domain in spec.domains.items():
            values = set(pc.unique(table[column]).to_pylist())
            assert values <= set(domain), (name, column, values - set(domain))
        key = table[spec.key]
        assert pc.count_distinct(key).as_py() == table.num_rows, f"{name} keys not unique"
        for column, other in spec.references.items():
            known = set(tables[other][CONTRACTS[other].key].to_pylist())
            assert set(table[column].to_pylist()) <= known, (name, column)
    duration = tables["items"][C.DURATION_MS].to_pylist()
    assert set(duration) == {DEFAULT_DURATION_MS}
    assert not lake.unknown_tables(batch)
    return tables


def assert_day_parts(batch: Path) -> None:
    """Events sit in one part per UTC day, and every row belongs to its folder's day."""
    folders = sorted((batch / "events").iterdir())
    assert folders
    for folder in folders:
        parts = list(folder.glob("*.parquet"))
        assert [p.name for p in parts] == ["part-0.parquet"], folder
        day = date.fromisoformat(folder.name.split("=")[1])
        days = set(pc.cast(pq.read_table(parts[0])[C.TS], pa.date32()).to_pylist())
        assert days == {day}


def staged(staging: Path) -> list[Path]:
    """Everything left in the staging area (hidden work folders included)."""
    return sorted(staging.rglob("*")) if staging.exists() else []


# --- MovieLens-100K from the recbole wheel ------------------------------------------------


@pytest.fixture(scope="module")
def ml100k_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ML-100K imported once for the module (it takes well under a second)."""
    staging = tmp_path_factory.mktemp("ml100k") / "staging"
    return import_path("recbole", ML100K / "ml-100k.inter", staging)


def test_recbole_imports_ml100k_from_the_wheel(ml100k_batch: Path) -> None:
    tables = assert_contracts(ml100k_batch)
    info = lake.read_batch_info(ml100k_batch)
    counts = {name: tables[name].num_rows for name in TABLES}
    assert counts["events"] == 100_000
    assert counts["users"] == 943
    assert counts["items"] == 1_682
    assert info.row_counts == counts
    assert info.source == "recbole"
    assert ml100k_batch.parent.name == "staging"
    assert ml100k_batch.name == info.batch_id
    assert info.batch_id.split("-")[1] == "recbole"
    # The window is the UTC days of the first and last rating, read from the raw file.
    raw = pd.read_csv(ML100K / "ml-100k.inter", sep="\t")
    seconds = raw["timestamp:float"]
    first = datetime.fromtimestamp(seconds.min(), UTC).date()
    last = datetime.fromtimestamp(seconds.max(), UTC).date()
    assert (info.window_start, info.window_end) == (first, last)
    assert (first, last) == (date(1997, 9, 20), date(1998, 4, 22))
    assert info.details["source_path"].endswith("ml-100k.inter")
    assert info.details["mapping"]
    assert_day_parts(ml100k_batch)


def test_ml100k_mapping_rules(ml100k_batch: Path) -> None:
    events = read(ml100k_batch, "events")
    raw = pd.read_csv(ML100K / "ml-100k.inter", sep="\t")
    assert events[C.EVENT_ID].str.fullmatch(r"recbole-e[0-9a-f]{32}").all()
    E = row_ids("recbole", ML100K / "ml-100k.inter")
    row = events.set_index(C.EVENT_ID).loc[E[0]]
    assert row[C.USER_ID] == f"recbole-u{raw.iloc[0]['user_id:token']}"
    assert row[C.ITEM_ID] == f"recbole-i{raw.iloc[0]['item_id:token']}"
    low = raw["rating:float"].le(2).sum()
    assert events[C.SKIPPED].sum() == low
    assert events[C.SAVED].sum() == raw["rating:float"].eq(5).sum()
    assert set(events.loc[events[C.SKIPPED], C.MS_PLAYED]) == {20_000}
    assert set(events.loc[events[C.SKIPPED], C.REASON_END]) == {"fwdbtn"}
    assert set(events.loc[~events[C.SKIPPED], C.REASON_END]) == {"trackdone"}
    items = read(ml100k_batch, "items").set_index(C.ITEM_ID)
    assert items.loc["recbole-i1", C.TITLE] == "Toy Story"
    assert items.loc["recbole-i1", C.RELEASE_DATE] == date(1995, 1, 1)
    assert "animation" in items.loc["recbole-i1", C.TAGS].split()
    assert set(items[C.GENRE]) <= {"pop", "country", "unknown"}
    assert (items[C.GENRE] == "pop").any()  # Musicals
    users = read(ml100k_batch, "users").set_index(C.USER_ID)
    assert users.loc["recbole-u1", C.AGE_BUCKET] == "18-24"  # age 24 in ml-100k.user
    assert set(users[C.COUNTRY]) == {D.UNKNOWN_COUNTRY}
    artists = read(ml100k_batch, "artists")
    assert len(artists) == 1_682  # one placeholder artist per movie
    assert set(artists[C.ARTIST_NAME]) == {"unknown artist"}


def test_chunked_import_of_the_folder_matches_one_chunk(ml100k_batch: Path, tmp_path: Path) -> None:
    batch = import_path("recbole", ML100K, tmp_path / "staging", chunk_rows=30_000)
    assert_day_parts(batch)
    for name in TABLES:
        assert lake.read_batch_table(batch, name).equals(lake.read_batch_table(ml100k_batch, name))


# --- MovieLens files ----------------------------------------------------------------------


def test_movielens_udata_with_side_files(tmp_path: Path) -> None:
    folder = S.write_udata(tmp_path / "ml-100k")
    seen: list[int] = []
    batch = import_path(
        "movielens", folder / "u.data", tmp_path / "staging", chunk_rows=2, progress=seen.append
    )
    assert seen == [2, 4, 5]
    assert [p.name for p in (tmp_path / "staging").iterdir()] == [batch.name]  # no leftovers
    assert_contracts(batch)
    assert_day_parts(batch)
    info = lake.read_batch_info(batch)
    assert info.source == "movielens"
    assert (info.window_start, info.window_end) == (date(1997, 9, 19), date(1997, 9, 22))
    events = read(batch, "events").set_index(C.EVENT_ID)
    E = row_ids("movielens", folder / "u.data")
    assert sorted(events.index) == sorted(E.values()) and len(E) == 5
    assert events.loc[E[0], C.SAVED] and not events.loc[E[0], C.SKIPPED]
    assert events.loc[E[0], C.MS_PLAYED] == DEFAULT_DURATION_MS
    skipped = events.loc[E[1]]
    assert skipped[C.SKIPPED] and skipped[C.MS_PLAYED] == 20_000
    assert skipped[C.REASON_END] == "fwdbtn" and not skipped[C.SAVED]
    assert events.loc[E[4], C.SKIPPED]  # rating 2
    assert not events.loc[E[3], C.SKIPPED]  # rating 4
    assert set(events[C.REASON_START]) == {"clickrow"}
    items = read(batch, "items").set_index(C.ITEM_ID)
    assert items.loc["ml100k-i10", C.TITLE] == "Misérables, Les (1995)"  # Latin-1 u.item
    assert items.loc["ml100k-i10", C.GENRE] == "pop"  # Musical
    assert items.loc["ml100k-i10", C.TAGS] == "drama musical"
    assert items.loc["ml100k-i20", C.GENRE] == "unknown"
    assert items.loc["ml100k-i20", C.RELEASE_DATE] == date(1995, 12, 15)
    assert items.loc["ml100k-i30", C.GENRE] == "country"  # Western
    assert items.loc["ml100k-i30", C.RELEASE_DATE] == date(1997, 9, 21)  # first interaction
    users = read(batch, "users").set_index(C.USER_ID)
    assert users.loc["ml100k-u1", C.AGE_BUCKET] == "13-17"  # age 7: treated as a minor
    assert users.loc["ml100k-u2", C.AGE_BUCKET] == "25-34"
    assert users.loc["ml100k-u3", C.AGE_BUCKET] == "55+"
    assert users.loc["ml100k-u2", C.SIGNUP_DATE] == date(1997, 9, 19)
    assert set(users[C.COUNTRY]) == {"ZZ"} and set(users[C.LANGUAGE]) == {"unknown"}
    assert set(users[C.TIER]) == {"premium"}


def test_movielens_without_side_files_uses_defaults(tmp_path: Path) -> None:
    folder = S.write_udata(tmp_path / "plain", side_files=False)
    batch = import_path("movielens", folder, tmp_path / "staging")
    items = read(batch, "items").set_index(C.ITEM_ID)
    assert items.loc["ml100k-i10", C.TITLE] == "10"  # the source id when no title is known
    assert set(items[C.GENRE]) == {"unknown"} and items[C.TAGS].isna().all()
    users = read(batch, "users")
    assert set(users[C.AGE_BUCKET]) == {"unknown"}


def test_movielens_ratings_csv(tmp_path: Path) -> None:
    folder = S.write_ratings_csv(tmp_path / "ml-latest-small")
    batch = import_path("movielens", folder, tmp_path / "staging")
    assert_contracts(batch)
    events = read(batch, "events").set_index(C.EVENT_ID)
    E = row_ids("movielens", folder)
    assert sorted(events.index) == sorted(E.values()) and len(E) == 4
    assert events.loc[E[2], C.SAVED]  # 5.0
    assert not events.loc[E[0], C.SAVED]  # 4.0
    assert events.loc[E[3], C.SKIPPED]  # 0.5
    assert not events.loc[E[1], C.SKIPPED]  # 2.5
    items = read(batch, "items").set_index(C.ITEM_ID)
    assert items.loc["mllatest-i2", C.GENRE] == "pop"
    assert items.loc["mllatest-i2", C.RELEASE_DATE] == date(1952, 1, 1)
    assert items.loc["mllatest-i3", C.TITLE] == "Heat, the Remake (2001)"
    assert items.loc["mllatest-i3", C.TAGS] is None


def test_movielens_ratings_csv_default_prefix(tmp_path: Path) -> None:
    folder = S.write_ratings_csv(tmp_path / "downloads")
    batch = import_path("movielens", folder / "ratings.csv", tmp_path / "staging")
    assert read(batch, "users")[C.USER_ID].tolist() == ["mllatest-u1", "mllatest-u7"]


def test_movielens_ratings_dat(tmp_path: Path) -> None:
    folder = S.write_ratings_dat(tmp_path / "ml-1m")
    batch = import_path("movielens", folder, tmp_path / "staging")
    assert_contracts(batch)
    users = read(batch, "users").set_index(C.USER_ID)
    assert users.loc["ml1m-u1", C.AGE_BUCKET] == "13-17"  # ml-1m age code 1 = under 18
    assert users.loc["ml1m-u2", C.AGE_BUCKET] == "55+"
    items = read(batch, "items").set_index(C.ITEM_ID)
    assert items.loc["ml1m-i661", C.GENRE] == "pop"
    assert items.loc["ml1m-i1193", C.RELEASE_DATE] == date(1975, 1, 1)


# --- generic interactions -----------------------------------------------------------------


def test_interactions_csv_iso_timestamps_and_weights(tmp_path: Path) -> None:
    path = tmp_path / "plays.csv"
    S.interactions_frame().to_csv(path, index=False)
    batch = import_path("interactions", path, tmp_path / "staging")
    assert_contracts(batch)
    info = lake.read_batch_info(batch)
    assert (info.window_start, info.window_end) == (date(2024, 3, 1), date(2024, 3, 3))
    assert info.details["value_column"] == "weight"
    events = read(batch, "events").set_index(C.EVENT_ID)
    E = row_ids("interactions", path)
    # -02:00 offsets are converted to UTC; text without a zone is UTC.
    assert events.loc[E[4], C.TS] == pd.Timestamp("2024-03-02T14:00:00Z")
    assert events.loc[E[2], C.TS] == pd.Timestamp("2024-03-02T08:30:00Z")
    assert events.loc[E[0], C.SAVED]  # weight 7 >= 5
    assert events.loc[E[2], C.SKIPPED]  # weight 0
    assert not events.loc[E[1], C.SKIPPED]  # weight 1
    assert not events.loc[E[1], C.SAVED]
    assert set(events[C.CONTEXT_TYPE]) == {"unknown"}
    assert set(events[C.DEVICE]) == {"unknown"} and set(events[C.PLATFORM]) == {"unknown"}
    assert not events[C.SHUFFLE].any() and not events[C.OFFLINE].any()
    users = read(batch, "users").set_index(C.USER_ID)
    assert users.index.tolist() == [
        "interactions-ualice",
        "interactions-ubob",
        "interactions-ucarol",
    ]
    assert users.loc["interactions-ubob", C.SIGNUP_DATE] == date(2024, 3, 2)
    assert set(users[C.AGE_BUCKET]) == {"unknown"}
    assert set(users[C.AGE_BUCKET]) <= set(D.MINOR_AGE_BUCKETS)
    items = read(batch, "items").set_index(C.ITEM_ID)
    assert items.loc["interactions-it3", C.RELEASE_DATE] == date(2024, 3, 2)
    assert items.loc["interactions-it1", C.AVAILABLE_MARKETS] == ",".join(D.MARKETS)
    assert not items[C.EXPLICIT].any()
    assert items[list(C.AUDIO_FEATURES)].isna().all().all()
    assert set(items[C.CONTENT_TYPE]) == {"track"}


def test_interactions_parquet_unix_seconds_and_ratings(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 2, 2],
            "item_id": [100, 100, 200],
            "timestamp": [1_700_000_000, 1_700_086_400, 1_700_000_500],
            "rating": [5.0, 1.0, 3.0],
        }
    )
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    batch = import_path("interactions", path, tmp_path / "staging", id_prefix="shop")
    assert_contracts(batch)
    events = read(batch, "events").set_index(C.EVENT_ID)
    E = row_ids("interactions", path, id_prefix="shop")
    assert events.loc[E[0], C.USER_ID] == "shop-u1"
    assert events.loc[E[0], C.ITEM_ID] == "shop-i100"
    assert events.loc[E[0], C.SAVED] and events.loc[E[1], C.SKIPPED]
    info = lake.read_batch_info(batch)
    assert (info.window_start, info.window_end) == (date(2023, 11, 14), date(2023, 11, 15))


def test_interactions_parquet_native_timestamps_without_suffix(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "User_ID": ["a", "b"],
            "item_id": ["x", "y"],
            "timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:00"]),
        }
    )
    path = tmp_path / "export.bin"
    frame.to_parquet(path)
    batch = import_path("interactions", path, tmp_path / "staging")
    events = read(batch, "events")
    assert events[C.TS].min() == pd.Timestamp("2024-01-01T10:00:00Z")
    assert not events[C.SKIPPED].any() and not events[C.SAVED].any()


def test_interactions_tsv_without_suffix_is_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "export"
    path.write_text("user_id\titem_id\ttimestamp\nu\ti\t1700000000\n")
    batch = import_path("interactions", path, tmp_path / "staging")
    assert read(batch, "events")[C.USER_ID].tolist() == ["interactions-uu"]


# --- Last.fm-1K -----------------------------------------------------------------------------


def test_lastfm1k_with_profiles(tmp_path: Path, settings: Settings) -> None:
    folder = S.write_lastfm(tmp_path / "lastfm-dataset-1K", extra_lines="broken line\n")
    batch = import_path("lastfm1k", folder, settings.staging_dir, chunk_rows=2)
    assert batch.parent == settings.staging_dir
    tables = assert_contracts(batch)
    assert_day_parts(batch)
    info = lake.read_batch_info(batch)
    assert info.source == "lastfm1k"
    assert (info.window_start, info.window_end) == (date(2008, 1, 1), date(2009, 5, 4))
    assert info.details["malformed_rows_skipped"] == 1
    assert info.row_counts == {"users": 3, "artists": 3, "items": 4, "events": 5}
    assert tables["events"].num_rows == 5
    users = read(batch, "users").set_index(C.USER_ID)
    assert sorted(users.index) == [f"lastfm1k-uuser_00000{i}" for i in (1, 2, 3)]
    assert users.loc["lastfm1k-uuser_000001", C.COUNTRY] == "JP"
    assert users.loc["lastfm1k-uuser_000002", C.COUNTRY] == "GB"
    assert users.loc["lastfm1k-uuser_000003", C.COUNTRY] == "ZZ"  # Canada: not a market
    assert users.loc["lastfm1k-uuser_000001", C.AGE_BUCKET] == "unknown"
    assert users.loc["lastfm1k-uuser_000002", C.AGE_BUCKET] == "13-17"
    assert users.loc["lastfm1k-uuser_000003", C.AGE_BUCKET] == "25-34"
    assert users.loc["lastfm1k-uuser_000001", C.SIGNUP_DATE] == date(2006, 8, 13)
    assert users.loc["lastfm1k-uuser_000003", C.SIGNUP_DATE] == date(2008, 1, 1)
    events = read(batch, "events").set_index(C.EVENT_ID)
    E = row_ids("lastfm1k", folder)
    hashed = "lastfm1k-i" + stable_key("Deep Dish", "Fuck Me Im Famous (Pacha Ibiza)-09-28-2007")
    assert events.loc[E[0], C.ITEM_ID] == hashed
    assert events.loc[E[3], C.ITEM_ID] == hashed  # same track, other listener
    assert events.loc[E[2], C.ITEM_ID] == "lastfm1k-i9e2ad5bc-c6f9-40d2-a36f-3122ee2072a3"
    assert events.loc[E[3], C.COUNTRY] == "GB"  # the listener's market
    assert not events[C.SKIPPED].any() and not events[C.SAVED].any()
    assert set(events[C.MS_PLAYED]) == {DEFAULT_DURATION_MS}
    items = read(batch, "items").set_index(C.ITEM_ID)
    underworld = "lastfm1k-a" + stable_key("Underworld")
    slippy = "lastfm1k-i" + stable_key("Underworld", '"Born Slippy" (Nuxx)')
    assert items.loc[slippy, C.TITLE] == '"Born Slippy" (Nuxx)'
    assert items.loc[slippy, C.ARTIST_ID] == underworld
    assert items.loc[hashed, C.ARTIST_ID] == "lastfm1k-af1b1cf71-bd35-4e99-8624-24a6e15f133a"
    artists = read(batch, "artists").set_index(C.ARTIST_ID)
    assert artists.loc[underworld, C.ARTIST_NAME] == "Underworld"
    assert "坂本龍一" in set(artists[C.ARTIST_NAME])


def test_lastfm1k_file_without_profile(tmp_path: Path) -> None:
    folder = S.write_lastfm(tmp_path / "x", profile=False)
    batch = import_path("lastfm1k", folder / S.PLAYS_FILE, tmp_path / "staging")
    users = read(batch, "users")
    assert set(users[C.COUNTRY]) == {"ZZ"} and set(users[C.AGE_BUCKET]) == {"unknown"}


def test_imports_are_deterministic(tmp_path: Path) -> None:
    # The same track id under another name, played earlier but written later in the file.
    track_mbid = "9e2ad5bc-c6f9-40d2-a36f-3122ee2072a3"
    alias = f"user_000002\t2005-01-01T00:00:00Z\t\tUnderworld\t{track_mbid}\tBBB\n"
    folder = S.write_lastfm(tmp_path / "lfm", extra_lines=alias)
    first = import_path("lastfm1k", folder, tmp_path / "a", chunk_rows=3)
    second = import_path("lastfm1k", folder, tmp_path / "b", chunk_rows=1000)
    for name in TABLES:
        assert lake.read_batch_table(first, name).equals(lake.read_batch_table(second, name))
    items = read(first, "items").set_index(C.ITEM_ID)
    track = f"lastfm1k-i{track_mbid}"
    assert items.loc[track, C.TITLE] == "Boy, Boy, Boy (Switch Remix)"  # its first row's name
    assert items.loc[track, C.RELEASE_DATE] == date(2005, 1, 1)  # its earliest play


# --- errors ---------------------------------------------------------------------------------


def _csv(tmp_path: Path, text: str | bytes, name: str = "plays.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


ERROR_CASES = {
    "missing file": ("interactions", lambda p: p / "nope.csv", ["nope.csv", "not found"]),
    "unknown format": ("spotify", lambda p: _csv(p, "x"), ["spotify", "interactions", "lastfm1k"]),
    "empty file": ("interactions", lambda p: _csv(p, ""), ["plays.csv", "empty"]),
    "header only": (
        "interactions",
        lambda p: _csv(p, "user_id,item_id,timestamp\n"),
        ["plays.csv", "no interactions"],
    ),
    "binary garbage": (
        "interactions",
        lambda p: _csv(p, bytes(range(256)) * 40),
        ["plays.csv", "binary"],
    ),
    "garbage parquet": (
        "interactions",
        lambda p: _csv(p, b"PAR1 this is not parquet", "x.parquet"),
        ["x.parquet", "Parquet"],
    ),
    "latin-1 bytes": (
        "interactions",
        lambda p: _csv(p, "user_id,item_id,timestamp\nJos\xe9,a,1700000000\n".encode("latin-1")),
        ["plays.csv", "UTF-8", "line 2", "iconv"],
    ),
    "missing columns": (
        "interactions",
        lambda p: _csv(p, "user,item_id,ts\nu,i,1700000000\n"),
        ["plays.csv", "missing required column(s) user_id, timestamp", "found user, item_id, ts"],
    ),
    "bad timestamp": (
        "interactions",
        lambda p: _csv(p, "user_id,item_id,timestamp\nu,i,1700000000\nu,j,yesterday\n"),
        ["plays.csv", "data row 2 (line 3)", "yesterday", "ISO-8601"],
    ),
    "milliseconds": (
        "interactions",
        lambda p: _csv(p, "user_id,item_id,timestamp\nu,i,1700000000000\n"),
        ["plays.csv", "data row 1", "milliseconds"],
    ),
    "non-numeric rating": (
        "interactions",
        lambda p: _csv(p, "user_id,item_id,timestamp,rating\nu,i,1700000000,great\n"),
        ["plays.csv", "rating", "great"],
    ),
    "empty user id": (
        "interactions",
        lambda p: _csv(p, "user_id,item_id,timestamp\n,i,1700000000\n"),
        ["plays.csv", "empty 'user_id'"],
    ),
    "ragged row": (
        "interactions",
        lambda p: _csv(p, "user_id,item_id,timestamp\nu,i,1700000000,extra,fields\n"),
        ["plays.csv", "malformed row"],
    ),
    "recbole without types": (
        "recbole",
        lambda p: _csv(p, "user_id\titem_id\ttimestamp\n1\t2\t3\n", "x.inter"),
        ["x.inter", "name:type"],
    ),
    "recbole missing timestamp": (
        "recbole",
        lambda p: _csv(p, "user_id:token\titem_id:token\n1\t2\n", "x.inter"),
        ["x.inter", "missing required field(s) timestamp"],
    ),
    "movielens folder without ratings": (
        "movielens",
        lambda p: p,
        ["u.data", "ratings.dat", "ratings.csv"],
    ),
    "movielens csv with wrong header": (
        "movielens",
        lambda p: _csv(p, "user,movie,stars,time\n1,2,3,4\n", "ratings.csv"),
        ["ratings.csv", "userId,movieId,rating,timestamp"],
    ),
    "lastfm wrong layout": (
        "lastfm1k",
        lambda p: _csv(p, "user_000001,2009-05-04T23:08:57Z,x\n", "log.tsv"),
        ["log.tsv", "expected 6", "Last.fm-1K"],
    ),
    "lastfm bad timestamp": (
        "lastfm1k",
        lambda p: _csv(p, "u\t2009-13-45T99:00:00Z\t\ta\t\tt\n", "log.tsv"),
        ["log.tsv", "data row 1", "2009-13-45"],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_raises_a_helpful_error_and_stages_nothing(tmp_path: Path, case: str) -> None:
    fmt, make, needles = ERROR_CASES[case]
    source = tmp_path / "in"
    source.mkdir()
    path = make(source)
    staging = tmp_path / "staging"
    with pytest.raises(ImportFormatError) as caught:
        import_path(fmt, path, staging)
    assert type(caught.value) is ImportFormatError
    message = str(caught.value)
    for needle in needles:
        assert needle in message, (needle, message)
    assert staged(staging) == []


def test_bad_bytes_deep_in_a_big_file_are_located(tmp_path: Path) -> None:
    good = "".join(f"user{i},item{i},{1_700_000_000 + i}\n" for i in range(5_000))
    data = ("user_id,item_id,timestamp\n" + good).encode() + b"Jos\xe9,x,1700000000\n"
    path = _csv(tmp_path, data)
    with pytest.raises(ImportFormatError, match=r"not valid UTF-8 at byte \d+ \(line 5002\)"):
        import_path("interactions", path, tmp_path / "staging", chunk_rows=1_000)
    assert staged(tmp_path / "staging") == []


def test_error_after_some_chunks_removes_the_partial_batch(tmp_path: Path) -> None:
    rows = [f"u{i},i{i},{1_700_000_000 + i * 86_400}" for i in range(20)] + ["u,i,nonsense"]
    path = _csv(tmp_path, "user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "other-batch").mkdir()  # someone else's batch must survive
    with pytest.raises(ImportFormatError, match=r"data row 21 \(line 22\)"):
        import_path("interactions", path, staging, chunk_rows=4)
    assert [p.name for p in staging.iterdir()] == ["other-batch"]


def test_import_format_error_is_a_value_error_and_formats_are_listed() -> None:
    assert issubclass(ImportFormatError, ValueError)
    assert set(FORMATS) == {"interactions", "movielens", "recbole", "lastfm1k"}


def test_batch_json_round_trips(ml100k_batch: Path) -> None:
    data = json.loads((ml100k_batch / lake.BATCH_FILE).read_text())
    assert data["details"]["id_prefix"] == "recbole"
    assert data["details"]["format"] == "recbole"


# --- property -------------------------------------------------------------------------------

ids = st.text(alphabet="abcxyz019-_.:@", min_size=1, max_size=4)
rows = st.lists(
    st.tuples(ids, ids, st.integers(0, 4_000_000_000), st.none() | st.floats(0, 5)),
    min_size=1,
    max_size=40,
)


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=rows, chunk_rows=st.integers(1, 50), as_parquet=st.booleans())
def test_property_rows_in_equal_events_out(
    tmp_path_factory: pytest.TempPathFactory,
    data: list[tuple[str, str, int, float | None]],
    chunk_rows: int,
    as_parquet: bool,
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    frame = pd.DataFrame(data, columns=["user_id", "item_id", "timestamp", "rating"])
    path = folder / ("in.parquet" if as_parquet else "in.csv")
    if as_parquet:
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    batch = import_path("interactions", path, folder / "staging", chunk_rows=chunk_rows)
    info = lake.read_batch_info(batch)
    # one event per distinct interaction (listener, item, time, event type): repeats drop out
    rating = frame["rating"].astype(float)
    kind = np.where(rating <= 2, "skip", np.where(rating >= 5, "save", "play"))
    distinct = frame.assign(kind=kind).drop_duplicates(["user_id", "item_id", "timestamp", "kind"])
    assert info.row_counts["events"] == len(distinct)
    assert lake.duplicate_counts(info)["events"] == {
        "received": len(frame), "in_batch": len(frame) - len(distinct), "in_lake": 0,
    }  # fmt: skip
    assert info.row_counts["users"] == frame["user_id"].nunique()
    assert info.row_counts["items"] == frame["item_id"].nunique()
    events = read(batch, "events")
    assert len(events) == len(distinct) and events[C.EVENT_ID].is_unique
    got = sorted(events[C.USER_ID].str.removeprefix("interactions-u"))
    assert got == sorted(distinct["user_id"])
    days = pd.to_datetime(frame["timestamp"], unit="s", utc=True).dt.date
    assert (info.window_start, info.window_end) == (days.min(), days.max())
    assert events[C.SKIPPED].sum() == (distinct["rating"].astype(float) <= 2).sum()
