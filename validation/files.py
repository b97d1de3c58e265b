"""Opening staged files without ever raising: a bad file becomes a clear sentence instead.

Parquet files start and end with the magic bytes `PAR1`; checking them first lets the
message say *what* the file is (empty, text, UTF-16 text, truncated) rather than echo a
low-level Arrow error.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MAGIC = b"PAR1"


class UnreadableFile(Exception):
    """A staged file cannot be read as Parquet; str() is the human explanation."""


def _describe_bytes(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text"
    if head.startswith(b"\xef\xbb\xbf"):
        return "UTF-8 text with a byte-order mark"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of an unknown format"
    if text.lstrip().startswith(("{", "[")):
        return "JSON-like text"
    return "CSV-like text" if "," in text or ";" in text or "\t" in text else "plain text"


def open_parquet(path: Path, label: str) -> pq.ParquetFile:
    """Open a Parquet file and read its footer, or raise UnreadableFile saying what is wrong.

    `label` is how the file is named in messages (its path inside the batch).
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(64)
            handle.seek(max(0, size - 4))
            tail = handle.read(4)
    except OSError as exc:
        raise UnreadableFile(f"{label} cannot be opened: {exc.strerror or exc}") from None
    if size == 0:
        raise UnreadableFile(f"{label} is an empty file (0 bytes), not a Parquet file")
    if not head.startswith(MAGIC):
        raise UnreadableFile(
            f"{label} is not a Parquet file: it starts with {head[:8]!r} "
            f"({_describe_bytes(head)}), not the Parquet magic bytes {MAGIC!r}"
        )
    if tail != MAGIC or size < 12:
        raise UnreadableFile(
            f"{label} is truncated: a Parquet file ends with {MAGIC!r}, this one ({size:,} "
            "bytes) has no footer; re-export or re-copy it"
        )
    try:
        handle = pq.ParquetFile(path)
        handle.schema_arrow  # noqa: B018 - forces the footer to be decoded
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise UnreadableFile(f"{label} is not a readable Parquet file: {exc}") from None
    return handle


def read_parquet(handle: pq.ParquetFile, label: str) -> pa.Table:
    """Read all row groups of an opened file, or raise UnreadableFile (corrupt pages)."""
    try:
        return handle.read()
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise UnreadableFile(
            f"{label} has a valid footer but its data cannot be read: {exc}"
        ) from None
