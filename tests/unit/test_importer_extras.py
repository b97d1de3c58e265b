"""What staging leaves out, read beside a batch: ratings joined back by event id, the side
files' genders and occupations, and the evaluation datasets built from both; formats
without ratings or side files give NaN ratings and no side information."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT
from crossfade.data import lake
from crossfade.data.importers import ImportFormatError, import_path, open_path
from crossfade.data.importers.extras import Extras, read_extras
from crossfade.evaluation.bench import load_interactions
from crossfade.evaluation.datasets import COLUMNS, load_dataset, side_info_of
from crossfade.evaluation.protocol import ml100k_events, ml100k_side_info
from tests.fixtures import importer_samples as S

ML100K = Path(str(importlib.resources.files("recbole") / "dataset_example" / "ml-100k"))


def test_open_path_streams_what_import_path_stages(tmp_path: Path) -> None:
    folder = S.write_udata(tmp_path / "ml-100k")
    source = open_path("movielens", folder, chunk_rows=2)
    chunks = list(source.chunks)
    assert [len(c) for c in chunks] == [2, 2, 1]
    rows = pd.concat(chunks)
    assert rows["rating"].tolist() == [float(r[2]) for r in S.UDATA_ROWS]
    assert source.prefix == "ml100k"
    with pytest.raises(ImportFormatError, match="unknown import format"):
        open_path("nope", folder)
    with pytest.raises(ImportFormatError, match="not found"):
        open_path("movielens", tmp_path / "missing")


def test_ml100k_extras_join_back_onto_the_staged_events(tmp_path: Path) -> None:
    extras = read_extras("recbole", ML100K)
    assert len(extras.ratings) == 100_000
    assert set(extras.ratings.unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    batch = import_path("recbole", ML100K, tmp_path / "staging")
    events = lake.read_batch_table(batch, "events").to_pandas()
    raw = pd.read_csv(ML100K / "ml-100k.inter", sep="\t")
    columns = (raw["user_id:token"], raw["item_id:token"], raw["rating:float"])
    expected = {
        (f"recbole-u{u}", f"recbole-i{i}"): float(r) for u, i, r in zip(*columns, strict=True)
    }
    got = extras.event_ratings(events[C.EVENT_ID])
    assert not np.isnan(got).any()
    pairs = zip(events[C.USER_ID], events[C.ITEM_ID], got, strict=True)
    assert all(expected[(u, i)] == r for u, i, r in pairs)
    users = extras.users
    fields = (C.AGE_BUCKET, C.GENDER, C.OCCUPATION)
    assert [users.at["recbole-u1", f] for f in fields] == ["18-24", "M", "technician"]
    assert set(users[C.GENDER]) == {"F", "M"} and users[C.OCCUPATION].nunique() == 21
    assert "animation" in str(extras.items.at["recbole-i1", C.TAGS]).split()
    # other prefixes and malformed ids have no rating
    first = events[C.EVENT_ID].iloc[0]
    digest = first.removeprefix("recbole-e")
    other = extras.event_ratings(pd.Series([first, f"x-e{digest}", "recbole-eX"]))
    key = (events[C.USER_ID].iloc[0], events[C.ITEM_ID].iloc[0])
    assert other[0] == expected[key] and np.isnan(other[1:]).all()


def test_ml100k_events_keep_ratings_as_a_column_and_every_row_a_positive() -> None:
    events = ml100k_events()
    assert list(events.columns) == list(COLUMNS)
    assert len(events) == 100_000 and (events[WEIGHT] == 1.0).all()
    assert events[C.RATING].value_counts().sort_index().tolist() == [
        6_110,
        11_370,
        27_145,
        34_174,
        21_201,
    ]
    side = ml100k_side_info()
    assert side.items.shape == (1_682, 26)  # 18 genres (none "unknown") + 8 decades
    assert {"tag:drama", "decade:1990"} <= set(side.items.columns)
    assert side.users.shape == (943, 2 + 21 + 6)  # genders, occupations, age buckets
    assert (side.users.sum(axis=1) == 3).all()


def test_movielens_side_files_give_genders_and_occupations(tmp_path: Path) -> None:
    folder = S.write_udata(tmp_path / "ml-100k")
    extras = read_extras("movielens", folder)
    facts = (C.GENDER, C.OCCUPATION)
    assert [extras.users.at["ml100k-u2", f] for f in facts] == ["F", "writer"]
    assert extras.ratings.tolist() == [float(r[2]) for r in S.UDATA_ROWS]  # file order
    data = load_dataset("movielens", folder)
    assert data.events[C.RATING].notna().all()
    assert {"gender:F", "occupation:writer", "age_bucket:55+"} <= set(data.side.users.columns)
    assert [data.side.items.at["ml100k-i10", t] for t in ("tag:drama", "tag:musical")] == [1, 1]
    dat = read_extras("movielens", S.write_ratings_dat(tmp_path / "ml-1m"))
    assert [dat.users.at["ml1m-u1", f] for f in facts] == ["F", "10"]


def test_sources_without_ratings_or_side_files_give_nan_and_nothing(tmp_path: Path) -> None:
    path = tmp_path / "plays.csv"
    S.interactions_frame().to_csv(path, index=False)  # weights (play counts), no ratings
    extras = read_extras("interactions", path)
    assert isinstance(extras, Extras) and extras.ratings.empty
    assert extras.users.empty and extras.items.empty
    events = load_interactions("interactions", path)
    assert list(events.columns) == list(COLUMNS)
    assert events[C.RATING].isna().all() and (events[WEIGHT] == 1.0).all()
    assert side_info_of("interactions", path).empty
    plain = S.write_udata(tmp_path / "plain", side_files=False)
    data = load_dataset("movielens", plain)
    assert data.side.empty and data.events[C.RATING].notna().all()


def test_a_bad_row_in_the_rating_stream_is_an_import_format_error(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("user_id,item_id,timestamp,rating\nu,i,1700000000,4\nu,j,1700000001,four\n")
    with pytest.raises(ImportFormatError, match=r"ratings\.csv"):
        read_extras("interactions", path)
