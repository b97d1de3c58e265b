"""Import real datasets as staged batches that follow the data contracts.

    from crossfade.data.importers import import_path
    batch_dir = import_path("recbole", path_to_ml_100k, settings.staging_dir)

Each format module opens its files as a `Source`; `staging` maps every source onto the
contracts with the same rules for absent fields (docs/importers.md) and writes one staged
batch (users, artists, items, events) ready for validation. Bad input raises
`ImportFormatError` and leaves nothing in the staging area.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa

from crossfade.data.importers import interactions, lastfm1k, movielens, recbole
from crossfade.data.importers.common import DEFAULT_DURATION_MS, ImportFormatError, Source
from crossfade.data.importers.readers import count_rows
from crossfade.data.importers.staging import Progress, stage_source

__all__ = [
    "DEFAULT_DURATION_MS",
    "FORMATS",
    "ImportFormatError",
    "Importer",
    "Source",
    "check_input",
    "count_rows",
    "import_path",
    "open_path",
    "reading",
]


class Importer(Protocol):
    """Opens one format's files as a `Source` (checks what it can before any rows are read)."""

    def __call__(self, path: Path, *, chunk_rows: int, id_prefix: str | None = None) -> Source:
        """Open `path`; raise ImportFormatError if it is not this format."""
        ...


FORMATS: dict[str, Importer] = {
    interactions.NAME: interactions.open_source,
    movielens.NAME: movielens.open_source,
    recbole.NAME: recbole.open_source,
    lastfm1k.NAME: lastfm1k.open_source,
}

# Errors of decoders and parsers that mean "this input is bad", never "crossfade is broken".
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    UnicodeError,
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    pd.errors.ParserError,
    KeyError,
    ValueError,
    # Reading the input, not writing the batch: a full disk must not look like a bad file.
    PermissionError,
    FileNotFoundError,
    IsADirectoryError,
)


@contextlib.contextmanager
def reading(fmt: str, path: Path) -> Iterator[None]:
    """Raise the decoder and parser errors of the block (bad input, not a crossfade bug) as
    the ImportFormatError users are shown; ImportFormatError itself passes unchanged."""
    try:
        yield
    except ImportFormatError:
        raise
    except _INPUT_ERRORS as exc:
        raise ImportFormatError(
            f"{path}: could not be imported as {fmt!r} ({type(exc).__name__}: {exc}); check "
            "that the file matches the format described in docs/importers.md"
        ) from exc


def check_input(fmt: str, path: Path) -> None:
    """Fail with one clear sentence unless `fmt` is known and `path` can be opened.

    Cheap (no file is read), so callers run it before starting anything heavy: a missing
    path, a symlink loop, a dangling link or a path without read permission never gets as
    far as an orchestrator or a traceback.
    """
    if fmt not in FORMATS:
        raise ImportFormatError(
            f"unknown import format {fmt!r}; known formats: {', '.join(FORMATS)}"
        )
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImportFormatError(
                f"{path}: is a symbolic link loop (a link that leads back to itself); point "
                f"--path at the real {fmt} file or folder"
            ) from None
        if path.is_symlink():
            raise ImportFormatError(
                f"{path}: is a symbolic link to {os.readlink(path)}, which does not exist; "
                "fix the link or pass the real path"
            ) from None
        if exc.errno == errno.EACCES:
            raise ImportFormatError(
                f"{path}: permission denied; make it readable or copy it somewhere readable"
            ) from None
        raise ImportFormatError(
            f"{path}: not found; check the path to the {fmt} dataset"
            + (
                f" (the folder {path.parent} does not exist either)"
                if not path.parent.exists()
                else ""
            )
        ) from None
    if not os.access(path, os.R_OK):
        raise ImportFormatError(
            f"{path}: permission denied; make it readable or copy it somewhere readable"
        )

    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise ImportFormatError(
            f"{path}: is neither a file nor a folder (a device, pipe or socket); pass the "
            f"{fmt} file or folder"
        )


def _checked_importer(fmt: str, path: Path, chunk_rows: int) -> Importer:
    """The format's importer, after checking the format name, the path and `chunk_rows`."""
    importer = FORMATS.get(fmt)
    if importer is None:
        raise ImportFormatError(
            f"unknown import format {fmt!r}; known formats: {', '.join(FORMATS)}"
        )
    check_input(fmt, path)
    if chunk_rows < 1:
        raise ImportFormatError(f"chunk_rows must be at least 1, got {chunk_rows}")
    return importer


def open_path(
    fmt: str, path: Path, *, chunk_rows: int = 1_000_000, id_prefix: str | None = None
) -> Source:
    """Open the dataset at `path` (format `fmt`) as a `Source` without staging it: its side
    tables and a lazy stream of normalized interaction chunks, exactly what `import_path`
    stages. Raises ImportFormatError on unreadable side files or headers (errors inside the
    stream surface while iterating `chunks`, as the importer's own errors or decoder ones)."""
    path = Path(path)
    importer = _checked_importer(fmt, path, chunk_rows)
    with reading(fmt, path):
        return importer(path, chunk_rows=chunk_rows, id_prefix=id_prefix)


def _tapped(
    chunks: Iterator[pd.DataFrame], on_chunk: Callable[[pd.DataFrame], None]
) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        on_chunk(chunk)
        yield chunk


def import_path(
    fmt: str,
    path: Path,
    staging_dir: Path,
    *,
    chunk_rows: int = 1_000_000,
    id_prefix: str | None = None,
    progress: Progress | None = None,
    on_chunk: Callable[[pd.DataFrame], None] | None = None,
) -> Path:
    """Map the dataset at `path` (format `fmt`) onto the contracts as ONE staged batch.

    Returns the batch folder under `staging_dir`, holding users, artists, items and events
    (one part per UTC day) plus batch.json with the window, row counts, source path and
    mapping notes. Files are streamed `chunk_rows` rows at a time, so memory stays bounded
    on big logs. `id_prefix` overrides the per-source prefix of every id; `progress` is
    called with the number of interactions read so far; `on_chunk` sees every normalized
    chunk before it is staged (to keep what the contracts drop, such as ratings, in the same
    pass). Raises ImportFormatError (naming the file, the problem and the fix) on any
    unreadable input, leaving no batch behind.
    """
    path = Path(path)
    importer = _checked_importer(fmt, path, chunk_rows)
    with reading(fmt, path):
        source = importer(path, chunk_rows=chunk_rows, id_prefix=id_prefix)
        if on_chunk is not None:
            source.chunks = _tapped(source.chunks, on_chunk)
        return stage_source(
            fmt, path, source, Path(staging_dir), chunk_rows=chunk_rows, progress=progress
        )
