"""Reading source files safely: checks, bounded streaming, and typed columns with row numbers.

Every failure here becomes an `ImportFormatError` that names the file, says what was wrong
(and where: byte, line or row) and what to do, instead of a decoder or Arrow traceback.
"""

from __future__ import annotations

import codecs
import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from crossfade.data import domains as D
from crossfade.data.importers import common as K
from crossfade.data.importers.common import ImportFormatError

SNIFF_BYTES = 1 << 16
PARQUET_MAGIC = b"PAR1"
US_PER_SECOND = 1_000_000
# Plausible listening times: the Unix epoch up to 2100-01-01 (catches milliseconds as seconds).
MAX_EPOCH_SECONDS = 4_102_444_800


# --- whole-file checks --------------------------------------------------------------------


def check_file(path: Path, what: str) -> None:
    """Fail clearly unless `path` is an existing, non-empty regular file."""
    if not path.exists():
        raise ImportFormatError(f"{path}: {what} not found; check the path")
    if not path.is_file():
        raise ImportFormatError(f"{path}: {what} must be a file, not a folder")
    if path.stat().st_size == 0:
        raise ImportFormatError(f"{path}: {what} is empty (0 bytes); export the data again")


# Byte-order marks, longest first (a UTF-32 LE mark starts like a UTF-16 LE one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 little-endian with a byte-order mark", "utf-32"),
    (codecs.BOM_UTF32_BE, "UTF-32 big-endian with a byte-order mark", "utf-32"),
    (codecs.BOM_UTF8, "UTF-8 with a byte-order mark", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "UTF-16 little-endian with a byte-order mark", "utf-16"),
    (codecs.BOM_UTF16_BE, "UTF-16 big-endian with a byte-order mark", "utf-16"),
)


def looks_like_header(line: str) -> bool:
    """Whether the first line of an unknown delimited file is a header: it holds no digit
    (data rows carry ids and times). Row counts and erasure both decide with this."""
    return not any(ch.isdigit() for ch in line)


def detect_encoding(sample: bytes) -> tuple[str, str] | None:
    """(description, Python codec) of a text encoding other than plain UTF-8, if recognised.

    Byte-order marks name UTF-8-BOM, UTF-16 and UTF-32; without a mark, text whose every
    other byte is NUL is UTF-16 (LE when the NULs are odd bytes). None: no marker found.
    """
    for bom, name, codec in _BOMS:
        if sample.startswith(bom):
            return name, codec
    even, odd = sample[0:1024:2], sample[1:1024:2]
    if len(sample) >= 8:
        if odd and odd.count(0) >= 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
            return "UTF-16 little-endian without a byte-order mark", "utf-16-le"
        if even and even.count(0) >= 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "UTF-16 big-endian without a byte-order mark", "utf-16-be"
    return None


def _wide_text_error(path: Path, what: str, name: str, codec: str) -> ImportFormatError:
    return ImportFormatError(
        f"{path}: {what} is {name}, not UTF-8; re-encode it as UTF-8 (e.g. `iconv -f "
        f"{codec.upper().replace('-LE', 'LE').replace('-BE', 'BE')} -t UTF-8 {path.name} > "
        f"{path.stem}-utf8{path.suffix}`) and import that file"
    )


def check_wide_text(path: Path, what: str, sample: bytes) -> None:
    """Name UTF-16 / UTF-32 text (with or without a mark) instead of calling it binary."""
    found = detect_encoding(sample)
    if found is not None and found[1] != "utf-8-sig":
        raise _wide_text_error(path, what, *found)


def is_parquet(path: Path) -> bool:
    """Whether the file starts with the Parquet magic bytes."""
    with path.open("rb") as handle:
        return handle.read(4) == PARQUET_MAGIC


def check_text(path: Path, what: str) -> None:
    """Fail unless the start of the file looks like UTF-8 text (not binary, not Latin-1)."""
    with path.open("rb") as handle:
        sample = handle.read(SNIFF_BYTES)
    check_wide_text(path, what, sample)
    if b"\x00" in sample:
        raise ImportFormatError(
            f"{path}: {what} is binary, not delimited text (found NUL bytes); "
            "pass a CSV/TSV text file (or a Parquet file where the format allows it)"
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        raise encoding_error(path, what) from None


def _locate_invalid_utf8(path: Path) -> tuple[int, int] | None:
    """Byte offset and 1-based line of the first byte that is not valid UTF-8, if any."""
    consumed = 0
    lines = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(1 << 20)
            data = carry + block
            if not data:
                return None
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                truncated = exc.reason == "unexpected end of data" and block
                if not truncated:
                    return consumed + exc.start, lines + data[: exc.start].count(b"\n") + 1
                carry = data[exc.start :]
                data = data[: exc.start]
            else:
                carry = b""
            if not block:
                return None
            consumed += len(data)
            lines += data.count(b"\n")


def encoding_error(path: Path, what: str) -> ImportFormatError:
    """The error for a file that is not UTF-8, pointing at the first bad byte."""
    where = _locate_invalid_utf8(path)
    at = f" at byte {where[0]} (line {where[1]})" if where else ""
    return ImportFormatError(
        f"{path}: {what} is not valid UTF-8{at}; re-encode it as UTF-8 "
        f"(e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed.{path.suffix.lstrip('.') or 'txt'}`)"
    )


def read_text(path: Path, what: str, *, legacy_latin1: bool = False) -> str:
    """Read a small side file as text; `legacy_latin1` accepts ISO-8859-1 files (GroupLens)."""
    check_file(path, what)
    data = path.read_bytes()
    check_wide_text(path, what, data[:SNIFF_BYTES])
    if b"\x00" in data[:SNIFF_BYTES]:
        raise ImportFormatError(f"{path}: {what} is binary, not text; pass the original file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if legacy_latin1:
            return data.decode("latin-1")
        raise encoding_error(path, what) from None


def read_header(path: Path, what: str, delimiter: str) -> list[str]:
    """The field names of the first line, stripped of quotes and spaces."""
    with path.open("rb") as handle:
        check_wide_text(path, what, handle.read(SNIFF_BYTES))
        handle.seek(0)
        first = handle.readline()
    try:
        line = first.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        raise encoding_error(path, what) from None
    return [name.strip().strip('"').strip() for name in line.split(delimiter)]


def count_rows(path: Path) -> tuple[int, str]:
    """Rows a file holds, counted without parsing it (for honest reports on unreadable input).

    Parquet: the footer's row count. Text in any recognised encoding: non-empty lines,
    less one when the first line has no digit (a header). A folder: the largest file in it.
    Returns the count and how it was counted; (0, reason) when nothing can be read.
    """
    try:
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file()]
            if not files:
                return 0, f"{path} holds no files"
            path = max(files, key=lambda p: p.stat().st_size)
        with path.open("rb") as handle:
            head = handle.read(4)
        if head == PARQUET_MAGIC:
            try:
                return pq.ParquetFile(path).metadata.num_rows, f"Parquet rows of {path.name}"
            except (pa.ArrowException, OSError):
                pass  # a damaged Parquet file: count nothing rather than guess
            return 0, f"{path.name} is a damaged Parquet file (no row count)"
        return _count_lines(path)
    except OSError as exc:
        return 0, f"{path} could not be read ({exc.strerror or exc})"


def _count_lines(path: Path) -> tuple[int, str]:
    with path.open("rb") as handle:
        sample = handle.read(SNIFF_BYTES)
    found = detect_encoding(sample)
    codec = found[1] if found else "utf-8"
    lines = 0
    first: str | None = None
    quoted = path.suffix.lower() == ".csv"  # CSV records may hold quoted line breaks
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)  # a 10 MB field is still one field to count
    try:
        with path.open("r", encoding=codec, errors="replace", newline="") as text:
            records = csv.reader(text) if quoted else ([line] for line in text)
            for record in records:
                if not "".join(record).strip():
                    continue
                if first is None:
                    first = ",".join(record)
                lines += 1
    except csv.Error:
        return _count_plain_lines(path, codec, found)
    finally:
        csv.field_size_limit(limit)
    header = first is not None and looks_like_header(first)
    rows = lines - (1 if header else 0)
    unit = "CSV records" if quoted else "non-empty lines"
    how = f"{unit} of {path.name}" + (" less its header" if header else "")
    return rows, how + (f" ({found[0]})" if found else "")


def _count_plain_lines(path: Path, codec: str, found: tuple[str, str] | None) -> tuple[int, str]:
    with path.open("r", encoding=codec, errors="replace") as text:
        lines = [line for line in text if line.strip()]
    header = bool(lines) and looks_like_header(lines[0])
    how = f"non-empty lines of {path.name}" + (" less its header" if header else "")
    return len(lines) - (1 if header else 0), how + (f" ({found[0]})" if found else "")


# --- streaming ----------------------------------------------------------------------------


@dataclass
class InvalidRows:
    """Counts (and remembers one example of) malformed rows a tolerant reader skipped."""

    count: int = 0
    example: str | None = None

    def skip(self, row: pcsv.InvalidRow) -> str:
        """pyarrow's invalid_row_handler: count the row and skip it."""
        self.count += 1
        if self.example is None:
            self.example = str(row.text)[:200]
        return "skip"


def _arrow_read_error(path: Path, what: str, delimiter: str, exc: Exception) -> ImportFormatError:
    message = str(exc)
    if "UTF8" in message or "UTF-8" in message:
        return encoding_error(path, what)
    if "parse error" in message.lower() or "columns" in message:
        return ImportFormatError(
            f"{path}: {what} has a malformed row ({message.strip()}); every row needs the same "
            f"number of fields separated by {delimiter!r}: fix or remove that row"
        )
    return ImportFormatError(f"{path}: {what} could not be read as delimited text ({message})")


def iter_tables(
    path: Path,
    what: str,
    *,
    column_names: list[str],
    delimiter: str,
    skip_rows: int,
    chunk_rows: int,
    quoted: bool = True,
    invalid: InvalidRows | None = None,
) -> Iterator[tuple[int, pa.Table]]:
    """Stream a delimited text file as string tables of at most `chunk_rows` rows.

    Yields (offset, table) where offset is the 0-based data row of the table's first row.
    Memory stays bounded by one chunk plus one read block, whatever the file size. With
    `invalid`, malformed rows are skipped and counted instead of failing the import.
    """
    block_size = int(min(max(chunk_rows * 96, 1 << 20), 64 << 20))
    read = pcsv.ReadOptions(column_names=column_names, skip_rows=skip_rows, block_size=block_size)
    parse = pcsv.ParseOptions(
        delimiter=delimiter,
        quote_char='"' if quoted else False,
        newlines_in_values=False,
        invalid_row_handler=invalid.skip if invalid is not None else None,
    )
    convert = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in column_names}, strings_can_be_null=False
    )
    try:
        reader = pcsv.open_csv(
            path, read_options=read, parse_options=parse, convert_options=convert
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return
        raise _arrow_read_error(path, what, delimiter, exc) from None
    schema = reader.schema
    pending: list[pa.RecordBatch] = []
    held = 0
    offset = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise _arrow_read_error(path, what, delimiter, exc) from None
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending, schema)
            yield offset, table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, held, offset = rest.to_batches(), rest.num_rows, offset + chunk_rows
    if held:
        yield offset, pa.Table.from_batches(pending, schema)


# --- typed columns ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Where a chunk sits in its file, to name rows in error messages."""

    path: Path
    offset: int  # 0-based data row of the chunk's first row
    header_lines: int | None  # lines before the first data row; None for Parquet

    def name(self, index: int) -> str:
        """Human name of a row of the chunk: data row number and, for text, the line."""
        row = self.offset + index + 1
        if self.header_lines is None:
            return f"row {row}"
        return f"data row {row} (line {row + self.header_lines})"


def _first_true(mask: pa.Array | pa.ChunkedArray) -> int | None:
    hits = np.flatnonzero(np.asarray(pc.fill_null(mask, True)))
    return int(hits[0]) if hits.size else None


def id_column(
    values: pa.ChunkedArray | pa.Array, column: str, rows: Rows, *, served: bool = True
) -> pd.Series:
    """Source ids as strings; an empty or missing id fails with its row, and so does (when
    `served`: the id becomes part of a lake id) one that the serving id rule refuses."""
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        try:
            values = pc.cast(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ImportFormatError(
                f"{rows.path}: column {column!r} has type {values.type}, which cannot be an id; "
                "store ids as text or integers"
            ) from None
    bad = _first_true(pc.or_(pc.is_null(values), pc.equal(pc.utf8_trim_whitespace(values), "")))
    if bad is not None:
        raise ImportFormatError(
            f"{rows.path}: {rows.name(bad)} has an empty {column!r}; every interaction needs "
            "one: fill it in or drop the row"
        )
    if not served:
        return pd.Series(values.to_pandas(), dtype=object)
    # Checked on the raw id, before listener ids are pseudonymized (a pseudonym would hide it).
    bad = _first_true(pc.invert(D.valid_ids(values)))
    if bad is not None:
        value = str(values[bad].as_py())
        shown = repr(value[:40]) + (f"... ({len(value):,} characters)" if len(value) > 40 else "")
        raise ImportFormatError(
            f"{rows.path}: {rows.name(bad)} has a {column} that serving would refuse "
            f"({shown}): ids must be {D.ID_RULE}; fix the id at the source or drop the row"
        )
    return pd.Series(values.to_pandas(), dtype=object)


def _epoch_check(
    seconds: np.ndarray, raw: pa.Array | pa.ChunkedArray, column: str, rows: Rows
) -> None:
    bad = np.flatnonzero((seconds < 0) | (seconds >= MAX_EPOCH_SECONDS))
    if bad.size:
        index = int(bad[0])
        raise ImportFormatError(
            f"{rows.path}: {rows.name(index)} has {column} {raw[index]} outside 1970..2100; "
            "timestamps must be Unix seconds (divide milliseconds by 1000) or ISO-8601 text"
        )


def _unparseable(
    raw: pa.Array | pa.ChunkedArray, index: int, column: str, rows: Rows
) -> ImportFormatError:
    return ImportFormatError(
        f"{rows.path}: {rows.name(index)} has an unparseable {column} {raw[index].as_py()!r}; "
        "use Unix seconds (e.g. 881250949) or ISO-8601 (e.g. 2009-05-04T23:08:57Z)"
    )


def timestamp_column(values: pa.ChunkedArray | pa.Array, column: str, rows: Rows) -> np.ndarray:
    """Parse Unix seconds, ISO-8601 text or native timestamps into int64 UTC microseconds.

    Text without a zone is taken as UTC. A missing, unparseable or implausible value fails
    with its row, so a bad file never becomes silently shifted data.
    """
    kind = values.type
    missing = _first_true(pc.is_null(values))
    if missing is not None:
        raise ImportFormatError(
            f"{rows.path}: {rows.name(missing)} has no {column}; every interaction needs a time"
        )
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_date(kind):
            values = pc.cast(values, pa.timestamp("s"))
        micros = np.asarray(
            pc.cast(pc.cast(values, pa.timestamp("us", tz="UTC")), pa.int64()), dtype=np.int64
        )
        _epoch_check(micros / US_PER_SECOND, values, column, rows)
        return micros
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        seconds = np.asarray(pc.cast(values, pa.float64()), dtype=np.float64)
        _epoch_check(seconds, values, column, rows)
        return np.round(seconds * US_PER_SECOND).astype(np.int64)
    if not pa.types.is_string(kind) and not pa.types.is_large_string(kind):
        raise ImportFormatError(
            f"{rows.path}: column {column!r} has type {kind}; use Unix seconds or ISO-8601 text"
        )
    trimmed = pc.utf8_trim_whitespace(values)
    try:
        seconds = np.asarray(pc.cast(trimmed, pa.float64()), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # not all numbers: ISO-8601 below
    else:
        _epoch_check(seconds, values, column, rows)
        return np.round(seconds * US_PER_SECOND).astype(np.int64)
    # Fast path: uniform ISO-8601 with a zone ("...Z", "+02:00"), or uniform without one (UTC).
    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            micros = np.asarray(pc.cast(pc.cast(trimmed, target), pa.int64()), dtype=np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        _epoch_check(micros / US_PER_SECOND, values, column, rows)
        return micros
    # Slow path: mixed ISO-8601 forms (or ISO mixed with epoch seconds), row by row.
    text = pd.Series(trimmed.to_pandas(), dtype=object)
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    micros = np.zeros(len(text), dtype=np.int64)
    iso_ok = parsed.notna().to_numpy()
    if iso_ok.any():
        micros[iso_ok] = (
            pd.DatetimeIndex(parsed[iso_ok])
            .tz_convert(None)
            .as_unit("us")
            .to_numpy()
            .astype(np.int64)
        )
    if not iso_ok.all():
        numeric = pd.to_numeric(text[~iso_ok], errors="coerce")
        if numeric.isna().any():
            index = int(np.flatnonzero(~iso_ok)[np.flatnonzero(numeric.isna().to_numpy())[0]])
            raise _unparseable(values, index, column, rows)
        micros[~iso_ok] = np.round(numeric.to_numpy(dtype=np.float64) * US_PER_SECOND)
    _epoch_check(micros / US_PER_SECOND, values, column, rows)
    return micros


def number_column(values: pa.ChunkedArray | pa.Array, column: str, rows: Rows) -> np.ndarray:
    """Parse an optional numeric column (rating, weight): empty text is NaN, words fail."""
    kind = values.type
    if pa.types.is_null(kind):  # e.g. a Parquet column with no values at all
        return np.full(len(values), np.nan)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return np.asarray(pc.cast(values, pa.float64()).to_pandas(), dtype=np.float64)
    if pa.types.is_boolean(kind):
        return np.asarray(pc.cast(values, pa.float64()).to_pandas(), dtype=np.float64)
    text = pd.Series(pc.utf8_trim_whitespace(values).to_pandas(), dtype=object).replace("", None)
    numbers = pd.to_numeric(text, errors="coerce")
    bad = np.flatnonzero((numbers.isna() & text.notna()).to_numpy())
    if bad.size:
        index = int(bad[0])
        raise ImportFormatError(
            f"{rows.path}: {rows.name(index)} has a non-numeric {column} {text.iloc[index]!r}; "
            f"{column} must be a number (or empty)"
        )
    return numbers.to_numpy(dtype=np.float64)


def text_column(values: pa.ChunkedArray | pa.Array) -> pd.Series:
    """A text column with surrounding whitespace removed (in Arrow: fast on big chunks)."""
    return pd.Series(pc.utf8_trim_whitespace(values).to_pandas(), dtype=object)


def interaction_frame(
    table: pa.Table,
    rows: Rows,
    *,
    user: str,
    item: str,
    ts: str,
    value: str | None = None,
    value_kind: str = K.RATING,
    source_id: str | None = None,
) -> pd.DataFrame:
    """Normalize one chunk of a source table into the interaction frame importers share.

    `source_id` names the source's own event id column, if it has one (part of the content id).
    """
    frame = pd.DataFrame(
        {
            K.ROW: np.arange(rows.offset, rows.offset + table.num_rows, dtype=np.int64),
            K.USER: id_column(table[user], user, rows),
            K.ITEM: id_column(table[item], item, rows),
            K.TS_US: timestamp_column(table[ts], ts, rows),
        }
    )
    if value is not None:
        frame[value_kind] = number_column(table[value], value, rows)
    if source_id is not None:
        frame[K.SOURCE_EVENT_ID] = id_column(table[source_id], source_id, rows, served=False)
    return frame
