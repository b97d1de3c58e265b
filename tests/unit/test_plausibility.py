"""Plausibility rules: ids serving accepts, encodings named, rows counted, paths checked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crossfade.data import domains as D
from crossfade.data.contracts import CONTRACTS
from crossfade.data.domains import valid_ids
from crossfade.data.importers import ImportFormatError, check_input, count_rows, import_path
from crossfade.serving.api import FeedbackRequest


def _served(value: str) -> bool:
    try:
        FeedbackRequest.model_validate(
            {"listener_id": value, "item_id": "t1", "event": "play"}, strict=False
        )
    except ValidationError as exc:
        if any(e["loc"] == ("listener_id",) for e in exc.errors()):
            return False
    return True


@given(st.text(max_size=140) | st.text(alphabet=D.ID_CHARACTERS + "/ \n\t", max_size=140))
def test_the_lake_id_rule_is_the_one_serving_applies(value: str) -> None:
    lake_ok = bool(valid_ids(pa.array([value], pa.string()))[0].as_py())
    assert lake_ok == _served(value), repr(value)


def test_every_id_column_of_every_contract_carries_the_rule() -> None:
    columns = {(n, c) for n, spec in CONTRACTS.items() for c in spec.id_columns}
    assert ("events", "user_id") in columns and ("events", "event_id") in columns
    assert ("items", "artist_id") in columns and ("ad_impressions", "ad_id") in columns


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("item_id", "../../etc/passwd", "'../../etc/passwd'"),
        ("user_id", "listener\nwith a newline", "'listener\\nwith a newline'"),
        ("user_id", "u" * 10_000_000, "(10,000,000 characters)"),
        ("item_id", "two words", "'two words'"),
    ],
    ids=["path", "newline", "10MB", "space"],
)
def test_ids_serving_would_refuse_are_rejected_at_import(
    tmp_path: Path, column: str, value: str, shown: str
) -> None:
    frame = pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["t1", "t2"], "timestamp": [1_700_000_000] * 2}
    )
    frame.loc[1, column] = value
    path = tmp_path / "ids.parquet"
    frame.to_parquet(path)
    with pytest.raises(ImportFormatError) as info:
        import_path("interactions", path, tmp_path / "staging")
    message = str(info.value)
    assert f"row 2 has a {column} that serving would refuse" in message
    assert shown in message and D.ID_RULE in message
    assert len(message) < 1_000


@pytest.mark.parametrize(
    ("encoding", "bom", "name"),
    [
        ("utf-16", True, "UTF-16 little-endian with a byte-order mark"),
        ("utf-16-be", False, "UTF-16 big-endian without a byte-order mark"),
        ("utf-16-le", False, "UTF-16 little-endian without a byte-order mark"),
        ("utf-32", True, "UTF-32 little-endian with a byte-order mark"),
    ],
)
def test_wide_encodings_are_named_not_called_binary(
    tmp_path: Path, encoding: str, bom: bool, name: str
) -> None:
    text = "user_id,item_id,timestamp\n" + "".join(
        f"u{i},t{i},{1_700_000_000 + i}\n" for i in range(3_000)
    )
    path = tmp_path / "wide.csv"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(ImportFormatError) as info:
        import_path("interactions", path, tmp_path / "staging")
    assert name in str(info.value) and "binary" not in str(info.value)
    assert "re-encode it as UTF-8" in str(info.value)
    rows, how = count_rows(path)
    assert rows == 3_000 and "less its header" in how


def test_rows_of_a_file_that_cannot_be_parsed_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("user_id,item_id,timestamp\n" + "u,t,1,extra,fields\n" * 3_000)
    with pytest.raises(ImportFormatError):
        import_path("interactions", path, tmp_path / "staging")
    assert count_rows(path)[0] == 3_000
    parquet = tmp_path / "rows.parquet"
    pd.DataFrame({"x": range(42)}).to_parquet(parquet)
    assert count_rows(parquet)[0] == 42


def test_unreadable_paths_are_one_sentence(tmp_path: Path) -> None:
    loop = tmp_path / "a"
    loop.symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(loop)
    dangling = tmp_path / "gone"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    cases = {
        tmp_path / "missing.csv": "not found",
        loop: "symbolic link loop",
        dangling: "which does not exist",
    }
    for path, words in cases.items():
        with pytest.raises(ImportFormatError, match=words):
            check_input("interactions", path)
    with pytest.raises(ImportFormatError, match="unknown import format"):
        check_input("spotify", tmp_path)
