"""Erasure of one listener from every store, with proof that nothing remains.

Each store is an `Eraser`: `erase` removes the listener's rows and says what it removed,
`find` scans and says where anything is left. The registry holds the core's file stores (the
lake, staged and quarantined batches, feature tables, serving logs, experiment exposures, bot
flags); packages above the core register the stores they own (the Feast online stores, in
`feature_repo/erasure.py`; the MLflow model artifacts, in `model_registry/erasure.py`) with
`register_store_factory`. Erasure is idempotent, so an interrupted run is finished by running it
again; the lake keeps its commit protocol (new files, then the manifest, then the old files are
removed) so readers never see a half-erased batch.

A `Finding` that cannot be cleaned where it is (`cleanable=False`: a binary raw file, ids inside
a trained model's parameters) says so and what to do in its `note`; erasure reports those
honestly instead of claiming a clean store.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.importers.readers import detect_encoding, looks_like_header
from crossfade.safety import paths

LISTENER_ID = "listener_id"  # serving logs and exposure logs name the listener this way
ID_COLUMNS = (C.USER_ID, LISTENER_ID)
AUDIT_FILE = "erasures.jsonl"
# Header names of the listener column in raw input files (the importers' formats and common
# spellings); a raw file without such a header is taken to hold the listener first
# (MovieLens, Last.fm-1K, RecBole .inter files all do).
RAW_USER_COLUMNS = frozenset(
    {"user_id", "userid", "user", "user_id:token", "listener_id", "account_id", "uid"}
)
RAW_DELIMITERS = ("::", "\t", ",", ";", "|")
# Raw files named like these hold the catalogue, not listening: their first field is no listener.
CATALOGUE_NAMES = ("item", "movie", "artist", "track", "genre", "occupation", "info")
TEXT_REPORT_SUFFIXES = (".html", ".htm", ".md", ".txt")
MIN_SUBSTRING_ID = 8  # shorter ids ("196") are only matched as whole fields or JSON strings
ERASED_MARK = "[erased]"


@dataclass(frozen=True)
class Finding:
    """Rows (or keys) of the listener in one place of one store.

    `cleanable` False: erasure cannot remove them here; `note` says why and what to do.
    """

    store: str
    location: str
    rows: int
    cleanable: bool = True
    note: str = ""


class Eraser(Protocol):
    """One store that may hold listener data."""

    name: str

    def erase(self, ids: frozenset[str]) -> list[Finding]:
        """Remove every row of these ids; return what was removed."""
        ...

    def find(self, ids: frozenset[str]) -> list[Finding]:
        """Scan for rows of these ids; return where any remain."""
        ...


StoreFactory = Callable[[Settings], list[Eraser]]
_FACTORIES: dict[str, StoreFactory] = {}


def register_store_factory(name: str, factory: StoreFactory) -> None:
    """Let a package above the core add its stores (called once at start-up; idempotent)."""
    _FACTORIES[name] = factory


# --- file helpers -------------------------------------------------------------------------


def _id_column(names: Iterable[str]) -> str | None:
    return next((c for c in ID_COLUMNS if c in names), None)


def _matches(table: pa.Table, column: str, ids: frozenset[str]) -> pa.Array:
    values = pc.cast(table[column], pa.string())
    return pc.fill_null(pc.is_in(values, value_set=pa.array(sorted(ids), pa.string())), False)


def parquet_rows(path: Path, ids: frozenset[str]) -> int:
    schema = pq.read_schema(path)
    column = _id_column(schema.names)
    if column is None:
        return 0
    table = pq.read_table(path, columns=[column])
    return int(pc.sum(_matches(table, column, ids)).as_py() or 0)


def without_ids(path: Path, ids: frozenset[str]) -> tuple[pa.Table, int] | None:
    """The file's table minus the ids' rows and how many went, or None if nothing matched."""
    table = pq.read_table(path)
    column = _id_column(table.column_names)
    if column is None:
        return None
    hit = _matches(table, column, ids)
    removed = int(pc.sum(hit).as_py() or 0)
    if removed == 0:
        return None
    return table.filter(pc.invert(hit)), removed


def _jsonl_lines(path: Path, ids: frozenset[str]) -> tuple[list[str], int]:
    keep: list[str] = []
    removed = 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            keep.append(line)
            continue
        if isinstance(record, dict) and any(str(record.get(c)) in ids for c in ID_COLUMNS):
            removed += 1
        else:
            keep.append(line)
    return keep, removed


def _data_files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        hidden = path.name.startswith(".")
        if path.is_file() and not hidden and path.suffix in (".parquet", ".jsonl"):
            yield path


# --- stores -------------------------------------------------------------------------------


@dataclass
class FileTreeEraser:
    """Parquet and JSONL files under a folder, each rewritten atomically without the rows."""

    name: str
    root: Path
    skip: tuple[Path, ...] = ()

    def _files(self) -> Iterator[Path]:
        for path in _data_files(self.root):
            if not any(path.is_relative_to(s) for s in self.skip):
                yield path

    def erase(self, ids: frozenset[str]) -> list[Finding]:
        """Rewrite every file that holds the ids."""
        found: list[Finding] = []
        for path in self._files():
            if path.suffix == ".jsonl":
                keep, removed = _jsonl_lines(path, ids)
                if removed:
                    lake.atomic_write_text(path, "".join(f"{line}\n" for line in keep))
            else:
                result = without_ids(path, ids)
                if result is None:
                    continue
                table, removed = result
                lake.atomic_write_parquet(table, path)
            if removed:
                found.append(Finding(self.name, str(path), removed))
        return found

    def find(self, ids: frozenset[str]) -> list[Finding]:
        """Count the ids' rows in every file."""
        found: list[Finding] = []
        for path in self._files():
            rows = (
                _jsonl_lines(path, ids)[1] if path.suffix == ".jsonl" else parquet_rows(path, ids)
            )
            if rows:
                found.append(Finding(self.name, str(path), rows))
        return found


# --- raw text, JSON and text reports --------------------------------------------------------


def _decode(data: bytes) -> tuple[str, str] | None:
    """Text and codec of a file, or None for binary (NUL bytes in UTF-8, undecodable).

    Encodings are recognised exactly as the importers recognise them (`detect_encoding`), so
    every file they quarantine as UTF-16 or UTF-32 text is read here as text.
    """
    found = detect_encoding(data[:65_536])
    if found is not None:
        try:
            return data.decode(found[1]), found[1]
        except UnicodeDecodeError:
            return None
    if b"\x00" in data[:65_536]:
        return None
    return data.decode("utf-8", errors="surrogateescape"), "utf-8"


def _encode(text: str, codec: str) -> bytes:
    return text.encode(codec, errors="surrogateescape" if codec == "utf-8" else "strict")


def _split(line: str, delimiter: str) -> list[str]:
    if len(delimiter) > 1:
        return line.split(delimiter)
    try:
        return next(csv.reader(io.StringIO(line), delimiter=delimiter))
    except (csv.Error, StopIteration):
        return line.split(delimiter)


def delimited_lines(text: str, ids: frozenset[str], first_column: bool) -> tuple[list[str], int]:
    """Lines of a delimited text file without the ids' rows, and how many went.

    The listener column is the one a header (a first line without digits) names as a listener
    (RAW_USER_COLUMNS); a header without one means no listener column; with no header, raw
    input (`first_column`) holds the listener first. A line that matches nothing stays.
    """
    lines = text.splitlines(keepends=True)
    if not lines:
        return lines, 0
    first = lines[0].rstrip("\r\n")
    delimiter = next((d for d in RAW_DELIMITERS if d in first), None)
    fields = _split(first, delimiter) if delimiter else [first]
    names = [f.strip().strip('"').lower() for f in fields]
    column = next((i for i, n in enumerate(names) if n in RAW_USER_COLUMNS), None)
    header = column is not None or looks_like_header(first)
    if column is None:
        if header or not first_column:
            return lines, 0
        column = 0
    keep = lines[:1] if header else []
    removed = 0
    for line in lines[1:] if header else lines:
        values = _split(line.rstrip("\r\n"), delimiter) if delimiter else [line.rstrip("\r\n")]
        if len(values) > column and values[column].strip().strip('"') in ids:
            removed += 1
        else:
            keep.append(line)
    return keep, removed


def scrub_json(value: Any, ids: frozenset[str]) -> tuple[Any, int]:
    """The JSON value with every string (or key) equal to an id, or holding a long one,
    replaced by ERASED_MARK; and how many were."""
    if isinstance(value, str):
        if value in ids or any(i in value for i in ids if len(i) >= MIN_SUBSTRING_ID):
            return ERASED_MARK, 1
        return value, 0
    if isinstance(value, list):
        out, hits = [], 0
        for item in value:
            new, n = scrub_json(item, ids)
            out.append(new)
            hits += n
        return out, hits
    if isinstance(value, dict):
        scrubbed: dict[str, Any] = {}
        hits = 0
        for key, item in value.items():
            new, n = scrub_json(item, ids)
            new_key, k = scrub_json(key, ids)
            scrubbed[f"{new_key}-{len(scrubbed)}" if k and new_key in scrubbed else new_key] = new
            hits += n + k
        return scrubbed, hits
    return value, 0


def _scrub_text(text: str, ids: frozenset[str]) -> tuple[str, int]:
    """Free text (HTML, Markdown) with every long id replaced by ERASED_MARK."""
    hits = 0
    for i in ids:
        if len(i) >= MIN_SUBSTRING_ID and i in text:
            hits += text.count(i)
            text = text.replace(i, ERASED_MARK)
    return text, hits


def byte_hits(data: bytes, ids: frozenset[str]) -> int:
    """Occurrences of the ids in raw bytes (ids too short to be told from noise are skipped)."""
    return sum(data.count(i.encode("utf-8")) for i in ids if len(i) >= MIN_SUBSTRING_ID)


@dataclass
class MixedTreeEraser:
    """Every kind of file under a folder: data files by rows, JSON and text reports by value.

    Parquet and JSONL lose the ids' rows; JSON reports (validation results, batch.json) and
    text reports (HTML, Markdown) get the ids replaced by ERASED_MARK; with `raw` (quarantined
    input that could not be imported: CSV, TSV, `::`-separated, any encoding with a BOM) every
    other text file loses the lines whose listener column holds an id. Each file is rewritten
    atomically. A binary file that holds an id is reported, not cleaned.
    """

    name: str
    root: Path
    raw: bool = False

    def _scan(self, path: Path, ids: frozenset[str], write: bool) -> Finding | None:
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            if not write:
                rows = parquet_rows(path, ids)
                return Finding(self.name, str(path), rows) if rows else None
            result = without_ids(path, ids)
            if result is None:
                return None
            lake.atomic_write_parquet(result[0], path)
            return Finding(self.name, str(path), result[1])
        if suffix == ".jsonl":
            keep, removed = _jsonl_lines(path, ids)
            if removed and write:
                lake.atomic_write_text(path, "".join(f"{line}\n" for line in keep))
            return Finding(self.name, str(path), removed) if removed else None
        data = path.read_bytes()
        decoded = _decode(data)
        if decoded is None:
            hits = byte_hits(data, ids)
            note = f"binary file: cannot be rewritten; delete {path} (or its batch folder)"
            if hits:
                return Finding(self.name, str(path), hits, False, note)
            if self.raw and any(len(i) < MIN_SUBSTRING_ID for i in ids):
                # short ids ("196") match noise in bytes: absence cannot be shown, so say so
                note = f"binary file: cannot be scanned for short ids; delete {path}"
                return Finding(self.name, str(path), 0, False, note)
            return None
        text, codec = decoded
        if suffix == ".json":
            try:
                scrubbed, hits = scrub_json(json.loads(text), ids)
            except json.JSONDecodeError:
                scrubbed, hits = None, 0
            if scrubbed is not None:
                if hits and write:
                    lake.atomic_write_text(path, json.dumps(scrubbed, indent=2, sort_keys=True))
                return Finding(self.name, str(path), hits) if hits else None
        if suffix in TEXT_REPORT_SUFFIXES:
            new_text, hits = _scrub_text(text, ids)
        else:
            catalogue = any(word in path.name.lower() for word in CATALOGUE_NAMES)
            keep, hits = delimited_lines(text, ids, first_column=self.raw and not catalogue)
            new_text = "".join(keep)
        if hits and write:
            lake.atomic_write_bytes(path, _encode(new_text, codec))
        return Finding(self.name, str(path), hits) if hits else None

    def _files(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and not path.is_symlink():
                yield path

    def erase(self, ids: frozenset[str]) -> list[Finding]:
        """Rewrite every file that holds the ids; binary files are left (see `find`)."""
        found = (self._scan(path, ids, write=True) for path in self._files())
        return [f for f in found if f is not None and f.cleanable]

    def find(self, ids: frozenset[str]) -> list[Finding]:
        """Where the ids remain, file by file."""
        found = (self._scan(path, ids, write=False) for path in self._files())
        return [f for f in found if f is not None]


@dataclass
class LakeEraser:
    """Published lake batches: rewritten files under new names, committed by the manifest."""

    lake_dir: Path
    name: str = "lake"

    def erase(self, ids: frozenset[str]) -> list[Finding]:
        """Per batch: write cleaned copies, swap the manifest atomically, then drop the old."""
        found: list[Finding] = []
        for manifest in lake.manifests(self.lake_dir):
            replaced: dict[str, str] = {}
            try:
                for table_name, rels in manifest["files"].items():
                    for i, rel in enumerate(rels):
                        result = without_ids(self.lake_dir / rel, ids)
                        if result is None:
                            continue
                        table, removed = result
                        old = self.lake_dir / rel
                        new = old.with_name(f"{old.stem}-e{uuid.uuid4().hex[:8]}.parquet")
                        lake.atomic_write_parquet(table, new)
                        new_rel = str(new.relative_to(self.lake_dir))
                        replaced[rel] = new_rel
                        rels[i] = new_rel
                        manifest["row_counts"][table_name] -= removed
                        found.append(Finding(self.name, rel, removed))
                if not replaced:
                    continue
                manifest.setdefault("erasures", 0)
                manifest["erasures"] += 1
                path = self.lake_dir / lake.MANIFESTS / f"{manifest['batch_id']}.json"
                lake.atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True))
            except BaseException:
                for new_rel in replaced.values():
                    (self.lake_dir / new_rel).unlink(missing_ok=True)
                raise
            for rel in replaced:
                (self.lake_dir / rel).unlink(missing_ok=True)
        return found

    def find(self, ids: frozenset[str]) -> list[Finding]:
        """Scan every Parquet file in the lake, committed or not (nothing may linger)."""
        found: list[Finding] = []
        for path in _data_files(self.lake_dir):
            rows = parquet_rows(path, ids) if path.suffix == ".parquet" else 0
            if rows:
                found.append(Finding(self.name, str(path.relative_to(self.lake_dir)), rows))
        return found


def core_stores(settings: Settings) -> list[Eraser]:
    """The file stores the core owns, all under the data root."""
    features = settings.features_dir
    return [
        LakeEraser(settings.lake_dir),
        FileTreeEraser("staging", settings.staging_dir),
        MixedTreeEraser("quarantine", settings.quarantine_dir, raw=True),
        MixedTreeEraser("reports", settings.reports_dir),
        FileTreeEraser("feature_tables", features),
        FileTreeEraser("serving_logs", paths.logs_dir(settings)),
        FileTreeEraser("experiment_exposures", paths.experiments_dir(settings)),
        FileTreeEraser("bot_flags", paths.bot_flags_dir(settings)),
    ]


def all_stores(settings: Settings) -> list[Eraser]:
    """Core stores plus every registered store (online stores and the like)."""
    stores = core_stores(settings)
    for factory in _FACTORIES.values():
        stores.extend(factory(settings))
    return stores


def registered_store_names() -> list[str]:
    """Names of the registered store factories (empty when none were registered)."""
    return sorted(_FACTORIES)


# --- erase / verify -----------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureRecord:
    """One audit line: who (pseudonym only), when, which stores, how many rows each."""

    pseudonym: str
    key_id: str
    at: str
    stores: list[str]
    removed: dict[str, int]
    remaining: int
    held_in_models: int = 0  # inside trained models: gone when retrained (docs/privacy.md)

    def to_json(self) -> str:
        """One JSONL line."""
        return json.dumps(asdict(self), sort_keys=True)


def erase_listener(
    stores: list[Eraser], ids: frozenset[str]
) -> tuple[list[Finding], list[Finding]]:
    """Erase `ids` (raw id and/or pseudonym) from every store, then verify; returns (removed,
    remaining). Anything remaining means the erasure is incomplete."""
    if not ids or any(not i for i in ids):
        raise ValueError("erasure needs a non-empty listener id")
    removed = [f for store in stores for f in store.erase(ids)]
    return removed, verify_listener(stores, ids)


def verify_listener(stores: list[Eraser], ids: frozenset[str]) -> list[Finding]:
    """Where any of `ids` remains, across every store (empty: nothing remains)."""
    return [f for store in stores for f in store.find(ids)]


def write_audit(settings: Settings, record: ErasureRecord) -> Path:
    """Append the record to <data root>/privacy/erasures.jsonl (fsynced; no raw id in it)."""
    path = paths.privacy_dir(settings) / AUDIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(record.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def audit_record(
    pseudonym: str,
    key_id: str,
    stores: list[Eraser],
    removed: list[Finding],
    remaining: int,
    held_in_models: int = 0,
) -> ErasureRecord:
    """Summarise an erasure for the audit log."""
    per_store: dict[str, int] = {}
    for f in removed:
        per_store[f.store] = per_store.get(f.store, 0) + f.rows
    return ErasureRecord(
        pseudonym=pseudonym,
        key_id=key_id,
        at=datetime.now(UTC).isoformat(),
        stores=[s.name for s in stores],
        removed=per_store,
        remaining=remaining,
        held_in_models=held_in_models,
    )
