"""Map a `Source` onto the contracts and write it as one staged batch, atomically.

Events stream through chunk by chunk: each chunk is mapped and spilled to one time-sorted
Parquet file. At the end, runs of consecutive days holding at most `chunk_rows` events are
read back (row-group statistics skip the rest) and written as exactly one part per UTC day,
so memory stays bounded and even a 19M-row log makes one file per day, not one per day and
chunk. Listeners, items and artists are built last from what the stream revealed (first
interaction per id) and the source's side tables. The batch is built
in a hidden work folder and renamed into the staging area only when complete, so a failed
import leaves nothing behind and a reader never sees half a batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.contracts import TS_TYPE, conform
from crossfade.data.importers import common as K
from crossfade.data.importers.common import ImportFormatError, Source
from crossfade.log import get_logger

log = get_logger(__name__)

WORK_DIR = ".importing"  # hidden: batches under construction
US_PER_DAY = 86_400_000_000
ROW_COLUMN = "_row"  # spill-only: arrival order, the tie-break that keeps day parts deterministic
EPOCH = date(1970, 1, 1)
Progress = Callable[[int], None]


def _day(days_since_epoch: int) -> date:
    return EPOCH + timedelta(days=int(days_since_epoch))


def _date_array(days: np.ndarray) -> pa.Array:
    return pa.array(days.astype(np.int32), pa.int32()).cast(pa.date32())


def _const(value: object, n: int, typ: pa.DataType) -> pa.Array:
    return pa.repeat(pa.scalar(value, typ), n)


class BatchBuilder:
    """Accumulates interaction chunks into a staged batch folder; `finish` writes the rest."""

    def __init__(self, batch_dir: Path, spill_dir: Path, source: Source, chunk_rows: int) -> None:
        """Start an empty batch in `batch_dir` for `source`, spilling chunks to `spill_dir`."""
        self.batch_dir = batch_dir
        self.spill_dir = spill_dir
        self.spills: list[Path] = []
        self.chunk_rows = chunk_rows
        self.source = source
        self.prefix = source.prefix
        self.user_first: pa.Table | None = None  # key, first (UTC microseconds)
        self.item_first: pa.Table | None = None
        self.stream_items = pd.DataFrame(columns=list(K.STREAM_ITEM_FIELDS))
        self.day_counts: dict[int, int] = {}
        self.events = 0  # rows received (every interaction the source held)
        self.duplicates = 0  # of them, repeats of an interaction earlier in the same batch
        self.chunks = 0
        self.value_kind: str | None = None
        users = source.users
        known = users["country"].dropna() if "country" in users.columns else pd.Series()
        self.country_keys = pa.array(known.index.astype(str), pa.string())
        self.country_values = pa.array(known.astype(str), pa.string())

    # --- events -------------------------------------------------------------------------

    def add(self, chunk: pd.DataFrame) -> None:
        """Map one interaction chunk to events and spill it, sorted by time."""
        if chunk.empty:
            return
        self._remember_facts(chunk)  # in file order: the first row of an item describes it
        arrival = np.arange(self.events, self.events + len(chunk), dtype=np.int64)
        chunk = chunk.assign(**{ROW_COLUMN: arrival})
        order = np.lexsort((arrival, chunk[K.TS_US].to_numpy()))
        chunk = chunk.iloc[order].reset_index(drop=True)
        users = pa.array(chunk[K.USER], pa.string())
        items = pa.array(chunk[K.ITEM], pa.string())
        self._check_stored_ids(chunk, users, items)
        self._remember_ids(chunk, users, items)
        table = self._events(chunk, users, items).append_column(
            ROW_COLUMN, pa.array(chunk[ROW_COLUMN].to_numpy(), pa.int64())
        )
        days, counts = np.unique(chunk[K.TS_US].to_numpy() // US_PER_DAY, return_counts=True)
        for day, count in zip(days.tolist(), counts.tolist(), strict=True):
            self.day_counts[day] = self.day_counts.get(day, 0) + count
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        spill = self.spill_dir / f"chunk-{self.chunks:06d}.parquet"
        row_group = max(1_024, min(65_536, self.chunk_rows // 8))
        pq.write_table(table, spill, row_group_size=row_group, compression="lz4")
        self.spills.append(spill)
        self.events += len(chunk)
        self.chunks += 1

    def _check_stored_ids(self, chunk: pd.DataFrame, users: pa.Array, items: pa.Array) -> None:
        """The ids as stored (prefix + key + raw id) must follow the serving id rule too: a
        raw id near the length limit passes the reader but not once prefixed."""
        for what, key, raw in (("user id", K.USER_KEY, users), ("item id", K.ITEM_KEY, items)):
            ok = np.asarray(D.valid_ids(pc.binary_join_element_wise(self.prefix + key, raw, "")))
            if ok.all():
                continue
            at = int(np.flatnonzero(~ok)[0])
            value = str(raw[at].as_py())
            limit = D.ID_MAX_LENGTH - len(self.prefix) - len(key)
            files = ", ".join(str(f) for f in self.source.files)
            raise ImportFormatError(
                f"{files}: data row {int(chunk[K.ROW].iloc[at]) + 1} has a {what} of "
                f"{len(value):,} characters ({value[:40]!r}...); stored as "
                f"{self.prefix}{key}<id> it would exceed {D.ID_MAX_LENGTH} characters: source "
                f"ids may be at most {limit} characters here; shorten the id or pass a shorter "
                "id_prefix"
            )

    @staticmethod
    def _first_seen(seen: pa.Table | None, keys: pa.Array, ts: pa.Array) -> pa.Table:
        """Earliest time per key, merged into what earlier chunks saw."""
        firsts = pa.table({"key": keys, "first": ts}).group_by("key").aggregate([("first", "min")])
        firsts = firsts.rename_columns(["key", "first"])
        if seen is None:
            return firsts
        merged = pa.concat_tables([seen, firsts]).group_by("key").aggregate([("first", "min")])
        return merged.rename_columns(["key", "first"])

    def _remember_ids(self, chunk: pd.DataFrame, users: pa.Array, items: pa.Array) -> None:
        ts = pa.array(chunk[K.TS_US].to_numpy(), pa.int64())
        self.user_first = self._first_seen(self.user_first, users, ts)
        self.item_first = self._first_seen(self.item_first, items, ts)

    def _remember_facts(self, chunk: pd.DataFrame) -> None:
        """Catalogue facts carried by the stream (Last.fm): kept from an item's first row."""
        present = [c for c in K.STREAM_ITEM_FIELDS if c in chunk.columns]
        if present:
            facts = chunk[[K.ITEM, *present]].drop_duplicates(K.ITEM).set_index(K.ITEM)
            new = facts[~facts.index.isin(self.stream_items.index)]
            if not new.empty:
                frames = [f for f in (self.stream_items, new) if not f.empty]
                self.stream_items = pd.concat(frames) if len(frames) > 1 else new

    def _events(self, chunk: pd.DataFrame, users: pa.Array, items: pa.Array) -> pa.Table:
        n = len(chunk)
        if K.RATING in chunk.columns:
            self.value_kind = K.RATING
        elif K.WEIGHT in chunk.columns:
            self.value_kind = K.WEIGHT
        low, high = K.outcomes(chunk)
        at = pc.index_in(users, value_set=self.country_keys)
        country = pc.fill_null(pc.take(self.country_values, at), D.UNKNOWN_COUNTRY)
        hashes = pa.array(K.event_hashes(chunk), pa.string())
        p = self.prefix
        table = pa.table(
            {
                C.EVENT_ID: pc.binary_join_element_wise(p + K.EVENT_KEY, hashes, ""),
                C.USER_ID: pc.binary_join_element_wise(p + K.USER_KEY, users, ""),
                C.ITEM_ID: pc.binary_join_element_wise(p + K.ITEM_KEY, items, ""),
                C.TS: pa.array(chunk[K.TS_US].to_numpy(), pa.int64()).cast(TS_TYPE),
                C.MS_PLAYED: pa.array(np.where(low, K.SKIPPED_MS_PLAYED, K.DEFAULT_DURATION_MS)),
                C.REASON_START: _const(K.REASON_START, n, pa.string()),
                C.REASON_END: pa.array(np.where(low, K.REASON_END_SKIPPED, K.REASON_END_DONE)),
                C.SKIPPED: pa.array(low),
                C.SAVED: pa.array(high),
                C.ADDED_TO_PLAYLIST: _const(False, n, pa.bool_()),
                C.FOLLOWED_ARTIST: _const(False, n, pa.bool_()),
                C.REPLAY: _const(False, n, pa.bool_()),
                C.CONTEXT_TYPE: _const(D.UNKNOWN, n, pa.string()),
                C.DEVICE: _const(D.UNKNOWN, n, pa.string()),
                C.PLATFORM: _const(D.UNKNOWN, n, pa.string()),
                C.COUNTRY: country,
                C.TIER: _const(K.DEFAULT_TIER, n, pa.string()),
                C.SHUFFLE: _const(False, n, pa.bool_()),
                C.OFFLINE: _const(False, n, pa.bool_()),
                C.SESSION_ID: pa.nulls(n, pa.string()),
            }
        )
        return conform(table, "events")

    def _day_windows(self) -> list[list[int]]:
        """Consecutive days grouped so that each group holds at most chunk_rows events."""
        windows: list[list[int]] = [[]]
        held = 0
        for day in sorted(self.day_counts):
            count = self.day_counts[day]
            if windows[-1] and held + count > self.chunk_rows:
                windows.append([])
                held = 0
            windows[-1].append(day)
            held += count
        return windows

    def _first_of_each(self, rows: pa.Table) -> pa.Table:
        """Keep the first arrival of each event id (repeats share a day: ids hash the time)."""
        firsts = rows.group_by(C.EVENT_ID).aggregate([(ROW_COLUMN, "min")])
        if firsts.num_rows == rows.num_rows:
            return rows
        self.duplicates += rows.num_rows - firsts.num_rows
        return rows.filter(pc.is_in(rows[ROW_COLUMN], value_set=firsts[f"{ROW_COLUMN}_min"]))

    def _write_days(self) -> None:
        """Read the spills back a window of days at a time; write one part per UTC day."""
        spilled = ds.dataset([str(p) for p in self.spills], format="parquet")
        for window in self._day_windows():
            low = pa.scalar(window[0] * US_PER_DAY, pa.int64()).cast(TS_TYPE)
            high = pa.scalar((window[-1] + 1) * US_PER_DAY, pa.int64()).cast(TS_TYPE)
            rows = spilled.to_table(filter=(ds.field(C.TS) >= low) & (ds.field(C.TS) < high))
            rows = self._first_of_each(rows)
            rows = rows.sort_by([(C.TS, "ascending"), (ROW_COLUMN, "ascending")])
            days = np.asarray(rows[C.TS].cast(pa.int64()), dtype=np.int64) // US_PER_DAY
            starts = np.searchsorted(days, window, side="left")
            ends = np.searchsorted(days, window, side="right")
            for day, start, end in zip(window, starts.tolist(), ends.tolist(), strict=True):
                part = rows.slice(start, end - start).drop_columns([ROW_COLUMN])
                lake.write_part(self.batch_dir, "events", part, part=0, day=_day(day))
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    # --- dimensions ---------------------------------------------------------------------

    @staticmethod
    def _sorted_firsts(seen: pa.Table | None) -> pd.Series:
        """First time per key as a Series indexed by key, in key order (deterministic output)."""
        if seen is None:
            return pd.Series(dtype=np.int64)
        seen = seen.sort_by("key")
        return pd.Series(seen["first"].to_numpy(), index=pd.Index(seen["key"].to_pandas()))

    def _users(self) -> pa.Table:
        ids = self._sorted_firsts(self.user_first)
        meta = self.source.users.reindex(ids.index)
        first_day = ids.to_numpy(dtype=np.int64) // US_PER_DAY
        signup = first_day
        if "signup_date" in meta.columns:
            known = pd.to_datetime(meta["signup_date"], errors="coerce")
            known_days = (known - pd.Timestamp("1970-01-01")).dt.days.to_numpy()
            has = ~np.isnan(known_days)
            signup = np.where(has, np.minimum(np.nan_to_num(known_days), first_day), first_day)

        def text(column: str, default: str) -> pa.Array:
            if column not in meta.columns:
                return _const(default, len(ids), pa.string())
            return pa.array(meta[column].fillna(default).astype(str), pa.string())

        table = pa.table(
            {
                C.USER_ID: pa.array(self.prefix + K.USER_KEY + ids.index.to_series(), pa.string()),
                C.TIER: _const(K.DEFAULT_TIER, len(ids), pa.string()),
                C.COUNTRY: text("country", D.UNKNOWN_COUNTRY),
                C.AGE_BUCKET: text("age_bucket", D.UNKNOWN),
                C.LANGUAGE: _const(D.UNKNOWN, len(ids), pa.string()),
                C.SIGNUP_DATE: _date_array(np.asarray(signup, dtype=np.int64)),
            }
        )
        return conform(table, "users")

    def _catalogue(self) -> tuple[pa.Table, pa.Table]:
        ids = self._sorted_firsts(self.item_first)
        n = len(ids)
        raw = ids.index.to_series()
        meta = self.source.items.reindex(ids.index)
        stream = self.stream_items.reindex(ids.index)

        def pick(column: str) -> pd.Series:
            side = meta[column] if column in meta.columns else pd.Series(pd.NA, index=ids.index)
            if column in stream.columns:
                side = side.where(side.notna(), stream[column])
            keep = (side.notna() & (side.astype(str) != "")).to_numpy()
            return side.astype(object).mask(~keep)

        first_day = ids.to_numpy(dtype=np.int64) // US_PER_DAY
        release = first_day
        if "release_date" in meta.columns:
            known = pd.to_datetime(meta["release_date"], errors="coerce")
            known_days = (known - pd.Timestamp("1970-01-01")).dt.days.to_numpy()
            release = np.where(np.isnan(known_days), first_day, np.nan_to_num(known_days))
        title = pick("title").fillna(raw)
        genre = pick("genre").fillna(D.UNKNOWN)
        artist_key = pick("artist_key")
        placeholder = artist_key.isna()
        artist_key = artist_key.fillna(raw)  # a placeholder artist per item
        artist_name = pick("artist_name").fillna(K.UNKNOWN_ARTIST_NAME)
        artist_name = artist_name.where(~placeholder, K.UNKNOWN_ARTIST_NAME)
        artist_id = self.prefix + "-a" + artist_key.astype(str)
        null_f32 = pa.nulls(n, pa.float32())
        items = pa.table(
            {
                C.ITEM_ID: pa.array(self.prefix + K.ITEM_KEY + raw, pa.string()),
                C.CONTENT_TYPE: _const("track", n, pa.string()),
                C.TITLE: pa.array(title.astype(str), pa.string()),
                C.ARTIST_ID: pa.array(artist_id, pa.string()),
                C.ALBUM_ID: pa.nulls(n, pa.string()),
                C.GENRE: pa.array(genre.astype(str), pa.string()),
                C.LANGUAGE: _const(D.UNKNOWN, n, pa.string()),
                C.RELEASE_DATE: _date_array(np.asarray(release, dtype=np.int64)),
                C.DURATION_MS: _const(K.DEFAULT_DURATION_MS, n, pa.int64()),
                C.EXPLICIT: _const(False, n, pa.bool_()),
                **{name: null_f32 for name in C.AUDIO_FEATURES},
                C.TAGS: pa.array(pick("tags"), pa.string()),
                C.AVAILABLE_MARKETS: _const(K.ALL_MARKETS, n, pa.string()),
            }
        )
        artists = pd.DataFrame(
            {
                C.ARTIST_ID: artist_id.to_numpy(),
                C.ARTIST_NAME: artist_name.astype(str).to_numpy(),
                C.GENRE: np.where(placeholder, genre.astype(str), D.UNKNOWN),
            }
        ).drop_duplicates(C.ARTIST_ID)
        artists = artists.sort_values(C.ARTIST_ID, kind="stable")
        m = len(artists)
        artist_table = pa.table(
            {
                C.ARTIST_ID: pa.array(artists[C.ARTIST_ID], pa.string()),
                C.ARTIST_NAME: pa.array(artists[C.ARTIST_NAME], pa.string()),
                C.COUNTRY: _const(D.UNKNOWN_COUNTRY, m, pa.string()),
                C.GENRE: pa.array(artists[C.GENRE], pa.string()),
                C.DEBUT_DATE: pa.nulls(m, pa.date32()),
            }
        )
        return conform(items, "items"), conform(artist_table, "artists")

    def finish(self) -> tuple[dict[str, int], date, date]:
        """Write users, artists and items; compact events; return counts and the window."""
        if self.events == 0:
            files = ", ".join(str(f) for f in self.source.files)
            raise ImportFormatError(
                f"{files}: no interactions found (the file has no data rows); "
                "pass a file with at least one interaction"
            )
        self._write_days()
        users = self._users()
        items, artists = self._catalogue()
        lake.write_part(self.batch_dir, "users", users, part=0)
        lake.write_part(self.batch_dir, "artists", artists, part=0)
        lake.write_part(self.batch_dir, "items", items, part=0)
        counts = {
            "users": users.num_rows,
            "artists": artists.num_rows,
            "items": items.num_rows,
            "events": self.events - self.duplicates,
        }
        return counts, _day(min(self.day_counts)), _day(max(self.day_counts))


EVENT_ID_KEY_DETAIL = "event_id_key_id"  # batch.json: the key id the event ids are keyed with
_EVENT_ID_CONTEXT = b"crossfade-event-id:"  # keeps this key apart from the pseudonym HMACs


def keyed_event_hashes(hashes: list[str], key: bytes) -> list[str]:
    """Content hashes re-hashed under `key` (keyed BLAKE2b, same length, deterministic).

    Equal hashes stay equal, so repeats and re-sends still dedupe; without the key, guessing a
    listener's raw id no longer rebuilds the id of their events.
    """
    secret = hashlib.sha256(_EVENT_ID_CONTEXT + key).digest()
    size = K.EVENT_HASH_BYTES
    return [
        hashlib.blake2b(h.encode("ascii"), key=secret, digest_size=size).hexdigest() for h in hashes
    ]


def key_event_ids(batch_dir: Path, key: bytes, key_id: str) -> int:
    """Re-key the content-hash event ids of an imported staged batch under `key`, in place.

    Staged ids hash the raw listener id, so they must not reach a pseudonymous lake as they
    are. Runs once per batch (the key id is recorded in batch.json; another key is refused);
    simulated batches (no import format) are left alone. Returns the rows re-keyed.
    """
    info = lake.read_batch_info(batch_dir)
    prefix = info.details.get("id_prefix")
    if info.details.get("format") is None or prefix is None:
        return 0
    done = info.details.get(EVENT_ID_KEY_DETAIL)
    if done == key_id:
        return 0
    if done is not None:
        raise ImportFormatError(
            f"batch {info.batch_id}: its event ids are keyed under key id {done}, not "
            f"{key_id}; stage the dataset again under the configured key"
        )
    head = str(prefix) + K.EVENT_KEY
    rows = 0
    for part in lake.table_files(batch_dir, "events"):
        try:
            table = pq.read_table(part)
        except (OSError, pa.ArrowException):
            continue  # unreadable: validation names it and the batch goes to quarantine
        ids = table[C.EVENT_ID].to_pylist()
        ours = [i is not None and i.startswith(head) for i in ids]
        keyed = iter(
            keyed_event_hashes([i[len(head) :] for i, o in zip(ids, ours, strict=True) if o], key)
        )
        new = [head + next(keyed) if o else i for i, o in zip(ids, ours, strict=True)]
        index = table.column_names.index(C.EVENT_ID)
        table = table.set_column(index, table.schema.field(index), pa.array(new, pa.string()))
        lake.atomic_write_parquet(table, part)
        rows += table.num_rows
    info.details[EVENT_ID_KEY_DETAIL] = key_id
    info.details[lake.EVENT_ID_SCHEME] = lake.KEYED_CONTENT_IDS
    lake.update_batch_info(batch_dir, info)
    return rows


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (another import running) or already gone
        path.rmdir()


def stage_source(
    fmt: str,
    path: Path,
    source: Source,
    staging_dir: Path,
    *,
    chunk_rows: int,
    progress: Progress | None = None,
) -> Path:
    """Stream `source` into a new staged batch under `staging_dir`; returns the batch folder.

    Built under `staging/.importing/<batch_id>` (spills beside it) and renamed into place
    when complete; on any failure the partial folder, the spills and any folder this call
    created are removed.
    """
    batch_id = lake.new_batch_id(fmt)
    today = datetime.now(UTC).date()
    info = lake.BatchInfo(batch_id=batch_id, source=fmt, window_start=today, window_end=today)
    created_staging = not staging_dir.exists()
    work_root = staging_dir / WORK_DIR
    work = work_root / batch_id
    spill = work_root / f"{batch_id}.spill"
    target = staging_dir / batch_id
    ok = False
    try:
        lake.create_batch(work_root, info)
        builder = BatchBuilder(work, spill, source, chunk_rows)
        for chunk in source.chunks:
            builder.add(chunk)
            if progress is not None:
                progress(builder.events)
        counts, start, end = builder.finish()
        info.window_start, info.window_end, info.row_counts = start, end, counts
        info.details = {
            "format": fmt,
            "source_path": str(path.resolve()),
            "files": [str(f.resolve()) for f in source.files],
            "id_prefix": source.prefix,
            lake.EVENT_ID_SCHEME: lake.CONTENT_IDS,
            "value_column": builder.value_kind,
            "mapping": source.notes,
            "defaults": {
                "tier": K.DEFAULT_TIER,
                "duration_ms": K.DEFAULT_DURATION_MS,
                "skipped_ms_played": K.SKIPPED_MS_PLAYED,
                "country": D.UNKNOWN_COUNTRY,
                "age_bucket": D.UNKNOWN,
                "language": D.UNKNOWN,
                "available_markets": K.ALL_MARKETS,
            },
            **source.details,
        }
        lake.record_duplicates(info, "events", received=builder.events, in_batch=builder.duplicates)
        lake.update_batch_info(work, info)
        os.replace(work, target)
        ok = True
    finally:
        shutil.rmtree(spill, ignore_errors=True)
        if not ok:
            shutil.rmtree(work, ignore_errors=True)
        _rmdir_if_empty(work_root)
        if not ok and created_staging:
            _rmdir_if_empty(staging_dir)
    log.info(
        "import staged",
        extra={"format": fmt, "batch_id": batch_id, "row_counts": info.row_counts},
    )
    return target
