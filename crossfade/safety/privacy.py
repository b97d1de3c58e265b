"""Privacy by design: keyed pseudonyms for listener ids and a retention limit for raw events.

Pseudonyms are HMAC-SHA256 of the raw id under a secret key (CROSSFADE_PRIVACY__PSEUDONYM_KEY
or a key file): stable for one key, so joins still work, and irreversible without it. The key
itself is never logged or stored; only its key id (a short hash of the key) is recorded, so a
rotation is visible and data pseudonymized under two keys is never silently mixed.
Retention drops whole raw-event partitions of the lake older than the limit.

Pseudonymization at ingestion is on by default. The embedded (`local`) profile makes its own
random key file under the data root on first use; the `services` and `cluster` profiles must be
given a key. Everything downstream of the lake is keyed by pseudonyms; the simulated world
(which stands for the listeners' devices and may know raw ids) is seen through
`listener_view`, and a recommender pseudonymizes a client's account id at its edge
(`edge_pseudonymizer`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.simulator.world import World

PSEUDONYM_PREFIX = "p"
PSEUDONYM_HEX = 24  # 96 bits: no collisions at any listener count we will see
KEY_ID_HEX = 12
KEY_FILE = "pseudonym_key.json"  # the key id the stores use (never the key)
LOCAL_KEY_DIR = "secrets"
LOCAL_KEY_NAME = "pseudonym.key"  # the local profile's own key: <data root>/secrets/pseudonym.key
LOCAL_KEY_BYTES = 32
RAW_EVENT_TABLES = ("events", "ad_impressions")  # fact tables the retention limit applies to
LISTENER_TABLES = ("users", "events", "ad_impressions", "onboarding")


log = logging.getLogger(__name__)


class PrivacyError(RuntimeError):
    """A privacy step cannot run safely; the message says what is missing and what to do."""


def local_key_path(settings: Settings) -> Path:
    """Where the `local` profile keeps the key it made itself (under the data root)."""
    return settings.data_root / LOCAL_KEY_DIR / LOCAL_KEY_NAME


def _local_key(settings: Settings) -> bytes:
    """The local profile's key file, created (random, mode 0600) when absent.

    Creation is atomic and race-free between processes: the key is written to a private
    temporary file that is then hard-linked into place, which fails if another process won.
    Only the creator says so, and never with the key.
    """
    path = local_key_path(settings)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(LOCAL_KEY_BYTES) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, path)
            log.warning(
                "no pseudonym key was configured: created a local key file (back it up with "
                "the data root; docs/privacy.md)",
                extra={"path": str(path)},
            )
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text().strip()
    if not text:
        raise PrivacyError(f"the local pseudonym key file {path} is empty; restore it from backup")
    return text.encode("utf-8")


def pseudonym_key(settings: Settings) -> bytes:
    """The configured key (env var first, then the key file); the `local` profile falls back to
    its own key file under the data root (created on first use). PrivacyError for the
    `services` and `cluster` profiles when no key is configured."""
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
        raise PrivacyError(f"the pseudonym key file {path} is empty; put the key in it")
    if settings.profile == "local":
        return _local_key(settings)
    raise PrivacyError(
        f"no pseudonym key for the {settings.profile!r} profile: set "
        "CROSSFADE_PRIVACY__PSEUDONYM_KEY or CROSSFADE_PRIVACY__PSEUDONYM_KEY_FILE (a file "
        "readable only by the service account; see docs/privacy.md)"
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
            try:
                table = pq.read_table(part)
            except (OSError, pa.ArrowException):
                continue  # unreadable: validation names it and the batch goes to quarantine
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
    published = lake.manifests(settings.lake_dir)
    if published and not (settings.data_root / "privacy" / KEY_FILE).is_file():
        raise PrivacyError(
            f"the lake already holds {len(published)} batch(es) with raw listener ids "
            "(published with privacy.pseudonymize_at_ingest off); mixing them with pseudonyms "
            "would split every listener in two: start from an empty data root, or set "
            "privacy.pseudonymize_at_ingest: false for this data root (docs/privacy.md)"
        )
    kid = record_key_id(settings, key)
    pseudonymize_batch(batch_dir, key)
    return kid


def stores_are_pseudonymous(settings: Settings) -> bool:
    """Whether the platform's stores hold pseudonyms rather than raw listener ids.

    The key id recorded at ingestion (`record_key_id`) is the proof that they do. With no
    record, a lake that already holds published batches holds raw ids (they were ingested with
    pseudonymization off); an empty lake follows `privacy.pseudonymize_at_ingest`.
    """
    if (settings.data_root / "privacy" / KEY_FILE).is_file():
        return True
    if lake.manifests(settings.lake_dir):
        return False
    return settings.privacy.pseudonymize_at_ingest


def stores_key(settings: Settings) -> bytes | None:
    """The key the stores' pseudonyms were made with, or None when the stores hold raw ids.

    Refuses (PrivacyError) a configured key whose id differs from the recorded one: its
    pseudonyms would match nothing that is stored.
    """
    if not stores_are_pseudonymous(settings):
        return None
    key = pseudonym_key(settings)
    path = settings.data_root / "privacy" / KEY_FILE
    if path.is_file():
        known = json.loads(path.read_text()).get("key_id")
        if known != key_id(key):
            raise PrivacyError(
                f"the configured pseudonym key (key id {key_id(key)}) is not the one the stores "
                f"use (key id {known}); configure that key, or re-key (docs/privacy.md)"
            )
    return key


def pseudonymous_world(world: World, key: bytes) -> World:
    """The same world with each listener known by their pseudonym under `key`.

    The forward map is built by pseudonymizing the world's own user ids, so `user_index`,
    `true_affinity` and `respond` take pseudonyms (and the events `respond` returns carry
    them), exactly as the platform's stores know the listeners.
    """
    listeners = world.listeners
    pseudonyms = np.array([pseudonymize(str(u), key) for u in listeners.user_ids], dtype=object)
    return dataclasses.replace(
        world, listeners=dataclasses.replace(listeners, user_ids=pseudonyms), _index={}
    )


def listener_view(settings: Settings, world: World) -> World:
    """The world as the stores know its listeners: pseudonymous when the stores are
    (`stores_key`), else the world itself."""
    key = stores_key(settings)
    return world if key is None else pseudonymous_world(world, key)


def edge_pseudonymizer(settings: Settings) -> Callable[[str], str]:
    """What a service applies to the account id a client sends before anything else sees it:
    its pseudonym when the stores are pseudonymous, else the id unchanged."""
    key = stores_key(settings)
    if key is None:
        return str

    @lru_cache(maxsize=65_536)
    def to_pseudonym(raw_id: str) -> str:
        return pseudonymize(raw_id, key)

    return to_pseudonym


def looks_like_pseudonym(value: str) -> bool:
    """Whether a listener id has the shape of a pseudonym ("p" + 24 hex digits)."""
    body = value[len(PSEUDONYM_PREFIX) :]
    return (
        value.startswith(PSEUDONYM_PREFIX)
        and len(body) == PSEUDONYM_HEX
        and all(ch in "0123456789abcdef" for ch in body)
    )


def serving_ids(settings: Settings, listener: str) -> frozenset[str]:
    """The ids a recommender knows this listener by (raw id or pseudonym given): their
    pseudonym when the stores are pseudonymous, else the id as given."""
    key = stores_key(settings)
    if key is None:
        return frozenset({listener})
    if looks_like_pseudonym(listener):
        return frozenset({listener, pseudonymize(listener, key)})
    return frozenset({pseudonymize(listener, key)})
