"""Lake I/O: staged batches, atomic publication, quarantine and reads of published data.

Layout under the data root::

    staging/<batch_id>/batch.json                 what the batch is (source, window, counts)
    staging/<batch_id>/<table>/[date=D/]part-N.parquet
    lake/<table>/date=D/part-<batch_id>.parquet   published data, partitioned by UTC day
    lake/_manifests/<batch_id>.json               commit record: the files a batch published
    quarantine/<batch_id>/...                     a rejected batch, whole, with its report

A batch becomes visible only when its manifest is written (write, then rename), so readers
never see half a batch. Fact tables are partitioned by the day of their time column;
dimension tables (users, artists, items) by the last day of the batch window, and reads keep
the newest row per key.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crossfade import columns as C
from crossfade.data.contracts import CONTRACTS, contract

BATCH_FILE = "batch.json"
MANIFESTS = "_manifests"
REPORT_FILE = "report.json"


class LakeError(RuntimeError):
    """A lake operation failed; the message says which batch or table and why."""


@dataclass
class BatchInfo:
    """What a staged batch holds and where it came from."""

    batch_id: str
    source: str
    window_start: date
    window_end: date
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    row_counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialize for batch.json."""
        data = asdict(self)
        data["window_start"] = self.window_start.isoformat()
        data["window_end"] = self.window_end.isoformat()
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BatchInfo:
        """Parse batch.json."""
        data = json.loads(text)
        data["window_start"] = date.fromisoformat(data["window_start"])
        data["window_end"] = date.fromisoformat(data["window_end"])
        return cls(**data)


def new_batch_id(source: str) -> str:
    """A sortable, unique batch id: UTC time, source and a short random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{source}-{uuid.uuid4().hex[:6]}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Text variant of `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(table: pa.Table, path: Path) -> None:
    """Write a Parquet file atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- staged batches ---------------------------------------------------------------------


def create_batch(staging_dir: Path, info: BatchInfo) -> Path:
    """Create an empty staged batch folder and its batch.json; returns the folder."""
    batch_dir = staging_dir / info.batch_id
    if batch_dir.exists():
        raise LakeError(f"batch {info.batch_id} already exists at {batch_dir}")
    batch_dir.mkdir(parents=True)
    atomic_write_text(batch_dir / BATCH_FILE, info.to_json())
    return batch_dir


def read_batch_info(batch_dir: Path) -> BatchInfo:
    """Read a staged (or quarantined) batch's batch.json."""
    path = batch_dir / BATCH_FILE
    if not path.is_file():
        raise LakeError(f"{batch_dir} is not a batch: {BATCH_FILE} is missing")
    return BatchInfo.from_json(path.read_text())


def update_batch_info(batch_dir: Path, info: BatchInfo) -> None:
    """Rewrite batch.json (e.g. with final row counts)."""
    atomic_write_text(batch_dir / BATCH_FILE, info.to_json())


def write_part(
    batch_dir: Path, table_name: str, data: pa.Table, part: int | str, day: date | None = None
) -> Path:
    """Write one Parquet part of a staged table (optionally under a date=D folder)."""
    contract(table_name)  # fail early on an unknown table name
    folder = batch_dir / table_name
    if day is not None:
        folder = folder / f"{C.DATE}={day.isoformat()}"
    path = folder / f"part-{part}.parquet"
    atomic_write_parquet(data, path)
    return path


def table_files(batch_dir: Path, table_name: str) -> list[Path]:
    """The Parquet files of one staged table, in a stable order."""
    folder = batch_dir / table_name
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))


def read_batch_table(batch_dir: Path, table_name: str) -> pa.Table:
    """Read a whole staged table; an absent table reads as empty with its contract schema."""
    files = table_files(batch_dir, table_name)
    if not files:
        return contract(table_name).empty()
    parts = [pq.read_table(p) for p in files]
    return pa.concat_tables(parts, promote_options="permissive")


def iter_batch_tables(batch_dir: Path) -> Iterator[tuple[str, list[Path]]]:
    """Each table present in a staged batch with its files, dimension tables first."""
    for name in CONTRACTS:
        files = table_files(batch_dir, name)
        if files:
            yield name, files


def unknown_tables(batch_dir: Path) -> list[str]:
    """Folders in a batch that match no contract (a batch must not smuggle tables in)."""
    return sorted(p.name for p in batch_dir.iterdir() if p.is_dir() and p.name not in CONTRACTS)


# --- publication ------------------------------------------------------------------------


def _partition_days(data: pa.Table, name: str, window_end: date) -> dict[date, pa.Table]:
    spec = contract(name)
    if spec.time_column is None or spec.dimension:
        return {window_end: data}
    days = pc.cast(data[spec.time_column], pa.date32())
    out: dict[date, pa.Table] = {}
    for day in pc.unique(days).to_pylist():
        out[day] = data.filter(pc.equal(days, pa.scalar(day, pa.date32())))
    return out


def publish_batch(batch_dir: Path, lake_dir: Path) -> dict[str, Any]:
    """Publish a validated staged batch to the lake, all or nothing; returns its manifest.

    Files go in with temporary names, are renamed into place, and the manifest is written
    last: until then no reader sees the batch. On any failure the files already placed are
    removed and the lake is as it was.
    """
    info = read_batch_info(batch_dir)
    manifest_path = lake_dir / MANIFESTS / f"{info.batch_id}.json"
    if manifest_path.exists():
        raise LakeError(f"batch {info.batch_id} is already published ({manifest_path})")
    placed: list[Path] = []
    files: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    try:
        for name, parts in iter_batch_tables(batch_dir):
            spec = contract(name)
            rows[name] = 0
            files[name] = []
            for index, part in enumerate(parts):
                data = pq.read_table(part).select(spec.schema.names).cast(spec.schema)
                for day, chunk in sorted(_partition_days(data, name, info.window_end).items()):
                    target = (
                        lake_dir
                        / name
                        / f"{C.DATE}={day.isoformat()}"
                        / f"part-{info.batch_id}-{index}.parquet"
                    )
                    if target.exists():
                        raise LakeError(f"refusing to overwrite {target}")
                    atomic_write_parquet(chunk, target)
                    placed.append(target)
                    files[name].append(str(target.relative_to(lake_dir)))
                    rows[name] += chunk.num_rows
        manifest = {
            "batch_id": info.batch_id,
            "source": info.source,
            "fingerprint": info.details.get("fingerprint"),
            EVENT_ID_SCHEME: info.details.get(EVENT_ID_SCHEME),
            "window_start": info.window_start.isoformat(),
            "window_end": info.window_end.isoformat(),
            "published_at": datetime.now(UTC).isoformat(),
            "row_counts": rows,
            "files": files,
        }
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    shutil.rmtree(batch_dir, ignore_errors=True)
    return manifest


def manifests(lake_dir: Path) -> list[dict[str, Any]]:
    """Committed batch manifests, oldest first."""
    folder = lake_dir / MANIFESTS
    if not folder.is_dir():
        return []
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return sorted(found, key=lambda m: (m["published_at"], m["batch_id"]))


EVENT_ID_SCHEME = "event_id_scheme"  # batch.json details and manifests of imported batches
CONTENT_IDS = "content"  # content-hash event ids, name-free fingerprints
KEYED_CONTENT_IDS = "content-keyed"  # the same, keyed under the pseudonym key


def old_style_imports(lake_dir: Path, sources: Iterable[str], expected: str) -> list[str]:
    """Published imported batches (from `sources`) whose event ids are not of the `expected`
    scheme: ids by row number or fingerprints by file name (no scheme recorded: before content
    ids), or an unkeyed hash where the stores are pseudonymous. Their events match nothing a
    new import stages, so a re-sent export would be published again."""
    names = set(sources)
    return [
        m["batch_id"]
        for m in manifests(lake_dir)
        if m.get("source") in names and m.get(EVENT_ID_SCHEME) != expected
    ]


def published_fingerprints(lake_dir: Path) -> dict[str, str]:
    """Fingerprint -> batch id of every published batch, to make re-ingestion a no-op."""
    return {m["fingerprint"]: m["batch_id"] for m in manifests(lake_dir) if m.get("fingerprint")}


def data_end(lake_dir: Path) -> date | None:
    """The last day of the newest data published (the end of the lake's data clock)."""
    ends = [m["window_end"] for m in manifests(lake_dir) if m.get("window_end")]
    return date.fromisoformat(max(ends)) if ends else None


# --- duplicates ---------------------------------------------------------------------------

DUPLICATES = "duplicates"  # batch.json details: table -> {received, in_batch, in_lake}


def record_duplicates(
    info: BatchInfo, table: str, *, received: int | None = None, in_batch: int = 0, in_lake: int = 0
) -> None:
    """Add to a batch's duplicate counts (kept in batch.json, shown in the batch report)."""
    entry = info.details.setdefault(DUPLICATES, {}).setdefault(
        table, {"received": 0, "in_batch": 0, "in_lake": 0}
    )
    if received is not None:
        entry["received"] = int(received)
    entry["in_batch"] += int(in_batch)
    entry["in_lake"] += int(in_lake)


def duplicate_counts(info: BatchInfo) -> dict[str, dict[str, int]]:
    """Per table: rows received before deduplication, and the repeats left out."""
    return {t: dict(v) for t, v in info.details.get(DUPLICATES, {}).items()}


def _committed_by_day(lake_dir: Path) -> dict[tuple[str, str], list[str]]:
    """(table, date=D folder) -> committed files: only what manifests name is published."""
    index: dict[tuple[str, str], list[str]] = {}
    for manifest in manifests(lake_dir):
        for table, rels in manifest["files"].items():
            for rel in rels:
                index.setdefault((table, Path(rel).parent.name), []).append(rel)
    return index


def _published_keys(
    lake_dir: Path, index: dict[tuple[str, str], list[str]], table: str, day: date, key: str
) -> pa.Array:
    files = index.get((table, f"{C.DATE}={day.isoformat()}"), [])
    if not files:
        return pa.array([], pa.string())
    return pa.concat_arrays(
        [pq.read_table(lake_dir / rel, columns=[key])[key].combine_chunks() for rel in files]
    )


def _drop_repeats(data: pa.Table, key: str) -> pa.Table:
    """Exact repeats of a row inside one part (same key, same content) kept once.

    Rows that share a key but differ are left for the unique check: a conflict to report,
    not a repeat to drop."""
    if pc.count_distinct(data[key]).as_py() == data.num_rows:
        return data
    frame = data.to_pandas()
    return pa.Table.from_pandas(
        frame.drop_duplicates(keep="first"), schema=data.schema, preserve_index=False
    )


def drop_published(batch_dir: Path, lake_dir: Path) -> dict[str, dict[str, int]]:
    """Leave out of a staged batch the fact rows already in the lake and exact repeats.

    A fact row whose key is already published is a duplicate: keys of fact tables are
    content ids (imports) or the source's own ids (simulator), and both carry the event's
    time, so only the key column of the lake's partitions for the batch's own days is read,
    whatever the size of the lake. Parts are rewritten atomically (removed when emptied);
    the counts go to batch.json and are returned (table -> received, in_batch, in_lake).
    """
    try:
        info = read_batch_info(batch_dir)
    except (LakeError, ValueError, TypeError, KeyError, OSError):
        return {}  # validation reports the broken batch.json
    index = _committed_by_day(lake_dir)
    cache: dict[tuple[str, date], pa.Array] = {}
    for name in CONTRACTS:
        spec = contract(name)
        if spec.dimension or spec.time_column is None:
            continue
        parts = table_files(batch_dir, name)
        if not parts:
            continue
        received = 0
        for part in parts:
            try:
                data = pq.read_table(part)
            except (OSError, pa.ArrowException):
                continue  # unreadable: validation reports it, and the batch is quarantined
            if spec.key not in data.column_names or spec.time_column not in data.column_names:
                continue  # schema drift: validation reports it
            if not pa.types.is_timestamp(data.schema.field(spec.time_column).type):
                continue
            received += data.num_rows
            kept = _drop_repeats(data, spec.key)
            repeats = data.num_rows - kept.num_rows
            days = pc.cast(kept[spec.time_column], pa.date32())
            seen = pa.array([False] * kept.num_rows, pa.bool_())
            for day in pc.drop_null(pc.unique(days)).to_pylist():
                if (name, day) not in cache:
                    cache[(name, day)] = _published_keys(lake_dir, index, name, day, spec.key)
                on_day = pc.fill_null(pc.equal(days, pa.scalar(day, pa.date32())), False)
                known = pc.is_in(kept[spec.key], value_set=cache[(name, day)])
                seen = pc.or_(seen, pc.and_(on_day, pc.fill_null(known, False)))
            in_lake = int(pc.sum(pc.cast(seen, pa.int64())).as_py() or 0)
            kept = kept.filter(pc.invert(seen)) if in_lake else kept
            if repeats or in_lake:
                if kept.num_rows:
                    atomic_write_parquet(kept, part)
                else:
                    part.unlink()
                record_duplicates(info, name, in_batch=repeats, in_lake=in_lake)
        entry = info.details.get(DUPLICATES, {}).get(name)
        if entry is None:
            record_duplicates(info, name, received=received)
        elif not entry.get("received"):
            entry["received"] = received
    update_batch_info(batch_dir, info)
    return duplicate_counts(info)


def staged_row_counts(batch_dir: Path) -> tuple[dict[str, int], list[str]]:
    """Rows per table of a staged batch from Parquet footers, and the files that are unreadable."""
    counts: dict[str, int] = {}
    unreadable: list[str] = []
    for folder in sorted(p for p in batch_dir.iterdir() if p.is_dir()):
        total = 0
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                total += pq.ParquetFile(path).metadata.num_rows
            except (OSError, pa.ArrowException):
                unreadable.append(str(path.relative_to(batch_dir)))
        counts[folder.name] = total
    return counts, unreadable


def last_accepted_counts(lake_dir: Path) -> dict[str, int] | None:
    """Row counts of the newest published batch (the baseline of the volume check)."""
    found = manifests(lake_dir)
    return dict(found[-1]["row_counts"]) if found else None


def read_lake_table(lake_dir: Path, table_name: str, columns: list[str] | None = None) -> pa.Table:
    """Read a published table: committed batches only; newest row per key for dimensions."""
    spec = contract(table_name)
    parts: list[pa.Table] = []
    for order, manifest in enumerate(manifests(lake_dir)):
        for rel in manifest["files"].get(table_name, []):
            part = pq.read_table(lake_dir / rel, columns=columns)
            if spec.dimension:
                part = part.append_column("_order", pa.array([order] * part.num_rows, pa.int32()))
            parts.append(part)
    if not parts:
        empty = spec.empty()
        return empty.select(columns) if columns else empty
    data = pa.concat_tables(parts)
    if spec.dimension and spec.key in data.column_names:
        frame = data.to_pandas()
        frame = frame.sort_values("_order", kind="stable").drop_duplicates(spec.key, keep="last")
        data = pa.Table.from_pandas(frame.drop(columns="_order"), preserve_index=False)
    elif "_order" in data.column_names:
        data = data.drop_columns(["_order"])
    return data


def known_keys(lake_dir: Path, table_name: str) -> set[str]:
    """Keys already published for a table (used to resolve references across batches)."""
    key = contract(table_name).key
    return set(read_lake_table(lake_dir, table_name, columns=[key])[key].to_pylist())


# --- quarantine -------------------------------------------------------------------------


def quarantine_batch(batch_dir: Path, quarantine_dir: Path, report: dict[str, Any]) -> Path:
    """Move a rejected batch, whole, into quarantine and store its validation report beside it."""
    target = quarantine_dir / batch_dir.name
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise LakeError(f"quarantine already holds {target}")
    os.replace(batch_dir, target)
    atomic_write_text(
        target / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True, default=str)
    )
    return target


def quarantine_files(
    paths: list[Path], quarantine_dir: Path, batch_id: str, report: dict[str, Any]
) -> Path:
    """Keep raw input files that could not even be read (malformed), with the reason."""
    target = quarantine_dir / batch_id / "raw"
    target.mkdir(parents=True, exist_ok=False)
    for path in paths:
        if path.is_dir():
            shutil.copytree(path, target / path.name)
        elif path.exists():
            shutil.copy2(path, target / path.name)
    atomic_write_text(
        target.parent / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True, default=str)
    )
    return target.parent
