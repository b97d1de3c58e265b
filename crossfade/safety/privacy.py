"""Privacy by design: keyed pseudonyms for listener ids and a retention limit for raw events.

Pseudonyms are HMAC-SHA256 of the raw id under a secret key (CROSSFADE_PRIVACY__PSEUDONYM_KEY
or a key file): stable for one key, so joins still work, and irreversible without it. The key
itself is never logged or stored; only its key id (a short hash of the key) is recorded, so a
rotation is visible and data pseudonymized under two keys is never silently mixed.
Retention drops whole raw-event partitions of the lake older than the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake

PSEUDONYM_PREFIX = "p"
PSEUDONYM_HEX = 24  # 96 bits: no collisions at any listener count we will see
KEY_ID_HEX = 12
KEY_FILE = "pseudonym_key.json"
RAW_EVENT_TABLES = ("events", "ad_impressions")  # fact tables the retention limit applies to
LISTENER_TABLES = ("users", "events", "ad_impressions", "onboarding")


class PrivacyError(RuntimeError):
    """A privacy step cannot run safely; the message says what is missing and what to do."""


def pseudonym_key(settings: Settings) -> bytes:
    """The configured key (env var first, then the key file); PrivacyError when there is none."""
    secret = settings.privacy.pseudonym_key
    if secret is not None and secret.get_secret_value():
        return secret.get_secret_value().encode("utf-8")
    path = settings.privacy.pseudonym_key_file
    if path is not None:
        try:
            text = Path(path).expanduser().read_text().strip()
        except OSError as exc:
            raise PrivacyError(
                f"cannot read the pseudonym key file {path}: {exc.strerror}"
            ) from None
        if text:
            return text.encode("utf-8")
    raise PrivacyError(
        "no pseudonym key: set CROSSFADE_PRIVACY__PSEUDONYM_KEY or privacy.pseudonym_key_file "
        "(a file readable only by the service; see docs/privacy.md)"
    )


def key_id(key: bytes) -> str:
    """A short public fingerprint of the key: identifies it without revealing it."""
    return hashlib.sha256(b"crossfade-key-id:" + key).hexdigest()[:KEY_ID_HEX]


def pseudonymize(raw_id: str, key: bytes) -> str:
    """The keyed pseudonym of one listener id: "p" + 24 hex digits of HMAC-SHA256."""
    digest = hmac.new(key, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX]


def pseudonymize_array(values: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """Pseudonyms of a string column (nulls stay null); each distinct id is hashed once."""
    unique = pc.unique(values)
    mapped = pa.array(
        [None if v is None else pseudonymize(v, key) for v in unique.to_pylist()], pa.string()
    )
    return pc.take(mapped, pc.index_in(values, value_set=unique))


def record_key_id(settings: Settings, key: bytes) -> str:
    """Remember the key id data was pseudonymized with; refuse a different (rotated) key.

    After a rotation the stored pseudonyms no longer match new ones: the stores must be
    re-keyed first (docs/privacy.md), then the record replaced. Returns the key id.
    """
    kid = key_id(key)
    path = settings.data_root / "privacy" / KEY_FILE
    if path.is_file():
        known = json.loads(path.read_text()).get("key_id")
        if known != kid:
            raise PrivacyError(
                f"the pseudonym key changed (stored data uses key id {known}, the configured "
                f"key is {kid}); re-key the stores before ingesting (docs/privacy.md, rotation)"
            )
        return kid
    payload = {"key_id": kid, "since": datetime.now(UTC).isoformat()}
    lake.atomic_write_text(path, json.dumps(payload, indent=2))
    return kid


def pseudonymize_batch(batch_dir: Path, key: bytes) -> dict[str, int]:
    """Replace the listener ids of every table of a staged batch by their pseudonyms, in place
    (each part rewritten atomically) and record the key id in batch.json; returns rows per
    table. A batch already pseudonymized with this key is left as it is."""
    info = lake.read_batch_info(batch_dir)
    kid = key_id(key)
    done = info.details.get("pseudonym_key_id")
    if done == kid:
        return {}
    if done is not None:
        raise PrivacyError(f"batch {info.batch_id} is already pseudonymized under key id {done}")
    rows: dict[str, int] = {}
    for name in LISTENER_TABLES:
        for part in lake.table_files(batch_dir, name):
            table = pq.read_table(part)
            if C.USER_ID not in table.column_names:
                continue
            index = table.column_names.index(C.USER_ID)
            table = table.set_column(
                index, table.schema.field(index), pseudonymize_array(table[C.USER_ID], key)
            )
            lake.atomic_write_parquet(table, part)
            rows[name] = rows.get(name, 0) + table.num_rows
    info.details["pseudonym_key_id"] = kid
    lake.update_batch_info(batch_dir, info)
    return rows


def _partition_day(path: Path) -> date | None:
    for parent in path.parents:
        if parent.name.startswith(f"{C.DATE}="):
            return date.fromisoformat(parent.name.split("=", 1)[1])
    return None


def apply_retention(
    lake_dir: Path, retention_days: int, today: date | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Drop raw-event partitions older than `retention_days` (before today - N days).

    Each batch's manifest is rewritten first without the expired files (the commit: readers
    stop seeing them), then the files are deleted; a crash in between leaves only unreferenced
    files, which the next run removes. Returns the cut-off day and the files dropped per table.
    """
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
    dropped: dict[str, list[str]] = {name: [] for name in RAW_EVENT_TABLES}
    for manifest in lake.manifests(lake_dir):
        changed = False
        for name in RAW_EVENT_TABLES:
            keep: list[str] = []
            for rel in manifest["files"].get(name, []):
                day = _partition_day(lake_dir / rel)
                if day is not None and day < cutoff:
                    dropped[name].append(rel)
                    changed = True
                else:
                    keep.append(rel)
            if name in manifest["files"]:
                manifest["files"][name] = keep
        if changed and not dry_run:
            manifest.setdefault("retention", []).append(
                {"cutoff": cutoff.isoformat(), "at": datetime.now(UTC).isoformat()}
            )
            path = lake_dir / lake.MANIFESTS / f"{manifest['batch_id']}.json"
            lake.atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True))
    if not dry_run:
        for name in RAW_EVENT_TABLES:
            folder = lake_dir / name
            referenced = {rel for m in lake.manifests(lake_dir) for rel in m["files"].get(name, [])}
            for path in sorted(folder.rglob("*.parquet")) if folder.is_dir() else []:
                day = _partition_day(path)
                rel = str(path.relative_to(lake_dir))
                if day is not None and day < cutoff and rel not in referenced:
                    path.unlink()
                    if rel not in dropped[name]:
                        dropped[name].append(rel)
            for part in sorted(folder.glob(f"{C.DATE}=*")) if folder.is_dir() else []:
                if part.is_dir() and not any(part.iterdir()):
                    part.rmdir()
    return {"cutoff": cutoff.isoformat(), "dropped": dropped, "dry_run": dry_run}


def pseudonymize_staged(settings: Settings, batch_dir: Path) -> str:
    """The ingestion step: pseudonymize a staged batch under the configured key (which must
    match the key the stores already use); returns the key id recorded in batch.json."""
    key = pseudonym_key(settings)
    kid = record_key_id(settings, key)
    pseudonymize_batch(batch_dir, key)
    return kid
