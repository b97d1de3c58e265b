"""Generic interaction logs: a CSV or Parquet file of user_id, item_id, timestamp (+ value).

The simplest way to bring any dataset in: export it with these column names. `timestamp`
is Unix seconds or ISO-8601 text; an optional `rating` (explicit, e.g. 1-5) or `weight`
(implicit strength, e.g. a play count) decides skips and saves. An optional `event_id` is
the source's own id of each interaction: it joins the listener, item, time and event type in
the content id, so two distinct plays in the same microsecond stay two events.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crossfade.data.importers import common as K
from crossfade.data.importers import readers as R
from crossfade.data.importers.common import ImportFormatError, Source

NAME = "interactions"
REQUIRED = ("user_id", "item_id", "timestamp")
VALUE_COLUMNS = ("rating", "weight")  # rating wins when both are present
SOURCE_ID = "event_id"  # optional: the source's own event id
WHAT = "interactions file"


def _check_columns(path: Path, found: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise ImportFormatError(
            f"{path}: missing required column(s) {', '.join(missing)}; found "
            f"{', '.join(found) or 'none'}. The {NAME} format needs {', '.join(REQUIRED)} "
            f"and optionally {' or '.join(VALUE_COLUMNS)}: rename the columns in the header"
        )


def _value(found: list[str]) -> str | None:
    return next((c for c in VALUE_COLUMNS if c in found), None)


def _csv_chunks(path: Path, chunk_rows: int) -> tuple[Iterator[pd.DataFrame], str | None]:
    R.check_text(path, WHAT)
    header = R.read_header(path, WHAT, ",")
    delimiter = ","
    if len(header) == 1 and "\t" in header[0]:
        delimiter = "\t"
        header = R.read_header(path, WHAT, delimiter)
    names = [h.lower() for h in header]
    _check_columns(path, names)
    if len(set(names)) != len(names):
        raise ImportFormatError(
            f"{path}: duplicate column names in the header {header}; rename them"
        )
    value = _value(names)
    source_id = SOURCE_ID if SOURCE_ID in names else None

    def chunks() -> Iterator[pd.DataFrame]:
        tables = R.iter_tables(
            path, WHAT, column_names=names, delimiter=delimiter, skip_rows=1, chunk_rows=chunk_rows
        )
        for offset, table in tables:
            rows = R.Rows(path, offset, header_lines=1)
            yield R.interaction_frame(
                table, rows, user="user_id", item="item_id", ts="timestamp",
                value=value, value_kind=value or K.RATING, source_id=source_id,
            )  # fmt: skip

    return chunks(), value


def _parquet_chunks(path: Path, chunk_rows: int) -> tuple[Iterator[pd.DataFrame], str | None]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportFormatError(
            f"{path}: not a readable Parquet file ({exc}); pass a Parquet or CSV file"
        ) from None
    found = [name.lower() for name in parquet.schema_arrow.names]
    _check_columns(path, found)
    value = _value(found)
    by_lower = {name.lower(): name for name in parquet.schema_arrow.names}
    source_id = SOURCE_ID if SOURCE_ID in found else None
    wanted = [*REQUIRED, *([value] if value else []), *([source_id] if source_id else [])]

    def chunks() -> Iterator[pd.DataFrame]:
        offset = 0
        try:
            for batch in parquet.iter_batches(
                batch_size=chunk_rows, columns=[by_lower[c] for c in wanted]
            ):
                table = pa.Table.from_batches([batch]).rename_columns(wanted)
                rows = R.Rows(path, offset, header_lines=None)
                yield R.interaction_frame(
                    table, rows, user="user_id", item="item_id", ts="timestamp",
                    value=value, value_kind=value or K.RATING, source_id=source_id,
                )  # fmt: skip
                offset += batch.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise ImportFormatError(f"{path}: the Parquet file is damaged ({exc})") from None

    return chunks(), value


def open_source(path: Path, *, chunk_rows: int, id_prefix: str | None = None) -> Source:
    """Open a CSV (`.csv`) or Parquet (`.parquet`) interaction log; other suffixes are sniffed."""
    R.check_file(path, WHAT)
    suffix = path.suffix.lower()
    parquet = suffix in (".parquet", ".pq") or (suffix != ".csv" and R.is_parquet(path))
    chunks, value = (_parquet_chunks if parquet else _csv_chunks)(path, chunk_rows)
    notes = [
        f"{'Parquet' if parquet else 'CSV'} columns user_id, item_id, timestamp"
        + (f" and {value}" if value else ""),
        "no listener or catalogue side files: listener and item fields take the defaults",
        "one placeholder artist ('unknown artist') per item",
    ]
    if value == "rating":
        notes.append("rating <= 2 is a skip, rating >= 5 a save")
    elif value == "weight":
        notes.append("weight <= 0 is a skip, weight >= 5 a save")
    return Source(
        prefix=id_prefix or NAME,
        files=[path],
        chunks=chunks,
        notes=notes,
    )
