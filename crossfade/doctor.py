"""Stack versions and endpoint reachability for `crossfade doctor`.

Versions are read from package metadata (no heavy imports); endpoints are probed with short
timeouts so a missing server is reported, not waited on.
"""

from __future__ import annotations

import socket
import sqlite3
from dataclasses import dataclass
from importlib import metadata
from urllib.parse import urlparse

from crossfade.config import Settings

STACK = (
    "crossfade",
    "prefect",
    "great-expectations",
    "feast",
    "mlflow",
    "bentoml",
    "scikit-learn",
    "implicit",
    "annoy",
    "lightgbm",
    "numpy",
    "pandas",
    "pyarrow",
    "recbole",
)


@dataclass(frozen=True)
class Check:
    """One endpoint: what it is, where, and whether it answered."""

    name: str
    target: str
    ok: bool
    detail: str


def stack_versions() -> dict[str, str]:
    """Installed version of each stack package, or 'missing'."""
    out = {}
    for name in STACK:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _tcp(host: str, port: int, timeout: float = 1.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, "accepts connections"
    except OSError as exc:
        return False, f"unreachable: {exc.strerror or exc}"


def check_postgres(dsn: str) -> Check:
    """Connect and run SELECT 1 against PostgreSQL."""
    import psycopg

    safe = _redact(dsn)
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        return Check("postgres", safe, True, f"server {version[0] if version else '?'}")
    except psycopg.Error as exc:
        return Check("postgres", safe, False, str(exc).strip().splitlines()[0])


def check_redis(url: str) -> Check:
    """PING Redis."""
    import redis

    safe = _redact(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        info: dict[str, object] = client.info("server")  # type: ignore[assignment]
        return Check("redis", safe, True, f"server {info.get('redis_version', '?')}")
    except redis.RedisError as exc:
        return Check("redis", safe, False, str(exc))


def check_tracking(uri: str) -> Check:
    """MLflow tracking store: a SQLite file is opened, a server URI is probed over TCP."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        try:
            sqlite3.connect(f"file:{path}?mode=rwc", uri=True).close()
            return Check("mlflow tracking", uri, True, "sqlite file usable")
        except sqlite3.Error as exc:
            return Check("mlflow tracking", uri, False, str(exc))
    ok, detail = _tcp(parsed.hostname or "127.0.0.1", parsed.port or 5432)
    return Check("mlflow tracking", _redact(uri), ok, detail)


def check_http(name: str, url: str) -> Check:
    """Probe an HTTP service's host and port."""
    parsed = urlparse(url)
    ok, detail = _tcp(parsed.hostname or "127.0.0.1", parsed.port or 80)
    return Check(name, url, ok, detail)


def endpoint_checks(settings: Settings) -> list[Check]:
    """Every endpoint the active profile uses, checked."""
    settings.data_root.mkdir(parents=True, exist_ok=True)
    checks = [check_tracking(settings.tracking_uri)]
    svc = settings.services
    if svc.postgres_dsn:
        checks.append(check_postgres(svc.postgres_dsn))
    if svc.redis_url:
        checks.append(check_redis(svc.redis_url))
    if svc.prefect_api_url:
        checks.append(check_http("prefect api", svc.prefect_api_url))
    else:
        checks.append(Check("prefect api", "temporary local server", True, "started on demand"))
    return checks


def _redact(url: str) -> str:
    """Hide a password in a connection string before it is printed or logged."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
