"""Erasure from the Feast online stores (SQLite locally, Redis on `services`).

The core's erasure registry (`crossfade.safety.erasure`) cannot import Feast or Redis, so the
online stores are registered from here. Keys are Feast's own: the serialized `user_id` entity
key (version 3), which the SQLite store uses as the `entity_key` column of every feature-view
table and the Redis store as the key prefix before the project name. `find` does not trust the
exact key alone: it also scans for the length-prefixed id inside any stored key, so a key
written by another serialization path would still be reported.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.safety.erasure import Eraser, Finding, register_store_factory
from feature_repo.store import render_config

KEY_VERSION = 3


def user_entity_key(listener: str) -> bytes:
    """Feast's serialized entity key of one listener."""
    key = EntityKey(join_keys=[C.USER_ID], entity_values=[Value(string_val=listener)])
    return bytes(serialize_entity_key(key, entity_key_serialization_version=KEY_VERSION))


def _id_needle(listener: str) -> bytes:
    raw = listener.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


@dataclass
class SqliteOnlineEraser:
    """Rows of the listener in every feature-view table of the SQLite online store."""

    path: Path
    name: str = "online_sqlite"

    def _tables(self, conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        out = []
        for (table,) in rows:
            columns = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")').fetchall()}
            if "entity_key" in columns:
                out.append(str(table))
        return out

    def erase(self, ids: frozenset[str]) -> list[Finding]:
        """Delete the listener's rows (one transaction for all tables)."""
        if not self.path.is_file():
            return []
        found: list[Finding] = []
        with sqlite3.connect(self.path) as conn:
            for table in self._tables(conn):
                for listener in sorted(ids):
                    cursor = conn.execute(
                        f'DELETE FROM "{table}" WHERE entity_key = ? OR instr(entity_key, ?) > 0',
                        (user_entity_key(listener), _id_needle(listener)),
                    )
                    if cursor.rowcount:
                        found.append(Finding(self.name, table, cursor.rowcount))
        return found

    def find(self, ids: frozenset[str]) -> list[Finding]:
        """Count rows whose entity key holds the listener id."""
        if not self.path.is_file():
            return []
        found: list[Finding] = []
        with sqlite3.connect(self.path) as conn:
            for table in self._tables(conn):
                for listener in sorted(ids):
                    (count,) = conn.execute(
                        f'SELECT count(*) FROM "{table}" WHERE instr(entity_key, ?) > 0',
                        (_id_needle(listener),),
                    ).fetchone()
                    if count:
                        found.append(Finding(self.name, table, int(count)))
        return found


def _glob_escape(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        if bytes([byte]) in (b"*", b"?", b"[", b"]", b"\\"):
            out += b"\\"
        out.append(byte)
    return bytes(out)


@dataclass
class RedisOnlineEraser:
    """The listener's hash (all feature views) in the Redis online store of this project."""

    client: Any  # redis.Redis
    project: str
    name: str = "online_redis"

    def _keys(self, listener: str) -> set[bytes]:
        exact = user_entity_key(listener) + self.project.encode("utf-8")
        # The user id is the last value of the entity key, directly followed by the project.
        pattern = b"*" + _glob_escape(_id_needle(listener) + self.project.encode("utf-8"))
        found = {k for k in self.client.scan_iter(match=pattern, count=1_000)}
        if self.client.exists(exact):
            found.add(exact)
        return found

    def erase(self, ids: frozenset[str]) -> list[Finding]:
        """Delete every key holding the listener id."""
        found: list[Finding] = []
        for listener in sorted(ids):
            keys = self._keys(listener)
            if keys:
                deleted = int(self.client.delete(*keys))
                found.append(Finding(self.name, f"{len(keys)} key(s)", deleted))
        return found

    def find(self, ids: frozenset[str]) -> list[Finding]:
        """Scan every key for the listener id."""
        found: list[Finding] = []
        for listener in sorted(ids):
            keys = self._keys(listener)
            if keys:
                found.append(Finding(self.name, f"{len(keys)} key(s)", len(keys)))
        return found


def online_stores(settings: Settings) -> list[Eraser]:
    """The online store of the active profile (and the SQLite file if one was left behind)."""
    config = render_config(settings)
    online = config.get("online_store", {})
    assert isinstance(online, dict)
    stores: list[Eraser] = []
    sqlite_path = settings.features_dir / "online_store.db"
    if online.get("type") == "sqlite":
        sqlite_path = Path(str(online["path"]))
    stores.append(SqliteOnlineEraser(sqlite_path))
    if online.get("type") == "redis":
        import redis

        url = settings.services.redis_url
        if not url:
            raise ValueError(
                f"profile {settings.profile!r} uses a Redis online store but services.redis_url "
                "is not set; set it in the profile or CROSSFADE_SERVICES__REDIS_URL"
            )
        stores.append(RedisOnlineEraser(redis.Redis.from_url(url), settings.features.project))
    return stores


def register() -> None:
    """Add the online stores to the erasure registry (call once at start-up)."""
    register_store_factory("feast_online", online_stores)
