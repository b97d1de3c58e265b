"""Validation inputs: schema drift on the Arrow schema, and files that are not Parquet."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossfade import columns as C
from crossfade.data.contracts import EVENTS, USERS
from tests.fixtures.batches import write_garbage
from validation.files import UnreadableFile, open_parquet
from validation.schema import Drift, broken_columns, compare_schema


def _schema(rename: dict[str, str] | None = None, **retype: pa.DataType) -> pa.Schema:
    fields = []
    for f in USERS.schema:
        name = (rename or {}).get(f.name, f.name)
        fields.append(pa.field(name, retype.get(f.name, f.type)))
    return pa.schema(fields)


def test_matching_schema_has_no_drift() -> None:
    assert compare_schema(USERS, USERS.schema) == []
    # nullability and field metadata are not the contract's business here
    loose = pa.schema([pa.field(f.name, f.type, nullable=True) for f in USERS.schema])
    assert compare_schema(USERS, loose) == []


def test_retyped_column_names_both_types() -> None:
    (drift,) = compare_schema(EVENTS, EVENTS.schema.set(4, pa.field(C.MS_PLAYED, pa.string())))
    assert drift == Drift("retyped", C.MS_PLAYED, "int64", "string")
    assert drift.check == "expect_column_values_to_be_of_type"


def test_missing_extra_and_renamed_columns() -> None:
    missing = compare_schema(USERS, USERS.schema.remove(1))
    assert missing == [Drift("missing", C.TIER, expected="string")]
    extra = compare_schema(USERS, USERS.schema.append(pa.field("mood", pa.int8())))
    assert extra == [Drift("extra", "mood", found="int8")]
    renamed = compare_schema(USERS, _schema(rename={C.COUNTRY: "market"}))
    assert renamed == [Drift("renamed", C.COUNTRY, expected=C.COUNTRY, found="market")]
    assert broken_columns(renamed + missing) == {C.COUNTRY, C.TIER}


def test_rename_pairs_by_position_when_types_are_ambiguous() -> None:
    # tier and country are both strings: position decides which extra column is which
    drifts = compare_schema(USERS, _schema(rename={C.TIER: "plan", C.COUNTRY: "market"}))
    assert {(d.column, d.found) for d in drifts} == {(C.TIER, "plan"), (C.COUNTRY, "market")}


def test_column_order_is_part_of_the_contract() -> None:
    fields = list(USERS.schema)
    swapped = pa.schema([fields[1], fields[0], *fields[2:]])
    (drift,) = compare_schema(USERS, swapped)
    assert drift.kind == "order" and drift.column is None


def _valid_file(tmp_path: Path) -> Path:
    path = tmp_path / "part-0.parquet"
    pq.write_table(USERS.empty(), path)
    return path


def test_a_valid_file_opens(tmp_path: Path) -> None:
    assert open_parquet(_valid_file(tmp_path), "users/part-0.parquet").metadata.num_rows == 0


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("empty", "users/part-0.parquet is an empty file (0 bytes)"),
        ("text", "users/part-0.parquet is not a Parquet file: it starts with b'event_id' (CSV"),
        ("utf16", "users/part-0.parquet is not a Parquet file: it starts with b'\\xff\\xfe"),
        ("truncated", "users/part-0.parquet is truncated"),
    ],
)
def test_unreadable_files_are_described(kind: str, words: str, tmp_path: Path) -> None:
    path = _valid_file(tmp_path)
    write_garbage(path, kind)
    with pytest.raises(UnreadableFile) as caught:
        open_parquet(path, "users/part-0.parquet")
    assert str(caught.value).startswith(words)
    if kind == "utf16":
        assert "(UTF-16 text)" in str(caught.value)


def test_corrupt_footer_is_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "part-0.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    with pytest.raises(UnreadableFile, match="is not a readable Parquet file"):
        open_parquet(path, "x.parquet")
